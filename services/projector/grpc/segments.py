"""SegmentService: definitions go to the log; answers come from the read models."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from cohortflow.changes.v1 import changes_pb2
from cohortflow.segments.v1 import segments_pb2, segments_pb2_grpc
from eventsourcing.persistence import IntegrityError

from services.common.grpc.auth import current_app_id
from services.common.grpc.errors import (
    FieldViolation,
    abort,
    already_exists,
    failed_precondition,
    invalid_argument,
    not_found,
)
from services.common.grpc.paging import BadPageToken, decode_token, encode_token, page_size
from services.eventlog.segments import Segment, SegmentArchivedError, segment_uuid
from services.eventlog.store import EventLog
from services.projector.adapters.encode import CAUSES, DIRECTIONS
from services.projector.adapters.segment_queries import SegmentQueries
from services.projector.domain.segments.definition import (
    SEGMENT_ID,
    DefinitionError,
    find_cycle,
    parse,
)
from services.projector.grpc.segment_convert import (
    condition_from_dict,
    condition_to_dict,
    us_to_timestamp,
)

_STATES = {
    "building": segments_pb2.Segment.STATE_BUILDING,
    "active": segments_pb2.Segment.STATE_ACTIVE,
    "archived": segments_pb2.Segment.STATE_ARCHIVED,
}
MAX_NAME = 200
MAX_DESCRIPTION = 2000


def segment_pb(row: dict[str, Any], version_row: dict[str, Any] | None) -> segments_pb2.Segment:
    segment = segments_pb2.Segment(
        segment_id=row["segment_id"],
        display_name=row["display_name"],
        description=row["description"],
        version=row["latest_version"],
        state=_STATES[row["state"]],
        active_version=row["active_version"],
        building_version=row["building_version"],
        size=row.get("size", 0),
        create_time=us_to_timestamp(row["created_us"]),
        update_time=us_to_timestamp(row["updated_us"]),
    )
    if version_row is not None:
        segment.version = version_row["version"]
        segment.display_name = version_row["display_name"]
        segment.description = version_row["description"]
        segment.condition.CopyFrom(condition_from_dict(version_row["definition"]))
        segment.defined_position = version_row["defined_position"]
    return segment


def membership_changed(row: dict[str, Any]) -> changes_pb2.MembershipChanged:
    details = row["details"]
    return changes_pb2.MembershipChanged(
        header=changes_pb2.ChangeHeader(
            change_id=row["change_id"],
            app_id=row["app_id"],
            user_id=row["user_id"],
            user_sequence=row["sequence"],
            cause=changes_pb2.Cause(
                kind=CAUSES[row["cause"]],
                event_ids=row["event_ids"],
                event_name=row["event_name"],
            ),
            effective_time=us_to_timestamp(row["effective_us"]),
            position=row["position"],
            recorded_time=us_to_timestamp(row["recorded_us"]),
            correction=row["correction"],
        ),
        segment_id=details["segment_id"],
        segment_version=details["segment_version"],
        direction=DIRECTIONS[row["to_value"]],
    )


class SegmentServicer(segments_pb2_grpc.SegmentServiceServicer):
    def __init__(
        self,
        log: EventLog,
        queries: SegmentQueries,
        caught_up: Callable[[grpc.aio.ServicerContext, int], Any],
        *,
        watch_poll_s: float = 0.2,
    ) -> None:
        self._log = log
        self._queries = queries
        self._caught_up = caught_up
        self._watch_poll_s = watch_poll_s

    # ---- writing ---------------------------------------------------------------------

    async def _validated(
        self, context: grpc.aio.ServicerContext, segment: segments_pb2.Segment, segment_id: str
    ) -> dict[str, Any]:
        """The dict form of the request's condition, or abort naming every bad field."""
        problems: list[FieldViolation] = []
        if not SEGMENT_ID.fullmatch(segment_id):
            problems.append(
                FieldViolation("segment_id", "lowercase letters, digits and -, 1 to 63 characters")
            )
        if len(segment.display_name) > MAX_NAME:
            problems.append(
                FieldViolation("segment.display_name", f"at most {MAX_NAME} characters")
            )
        if len(segment.description) > MAX_DESCRIPTION:
            problems.append(
                FieldViolation("segment.description", f"at most {MAX_DESCRIPTION} characters")
            )
        data = condition_to_dict(segment.condition)
        try:
            definition = parse(data, "segment.condition")
        except DefinitionError as error:
            problems.extend(FieldViolation(path, message) for path, message in error.problems)
            definition = None
        if definition is not None:
            known = await asyncio.to_thread(self._queries.latest_definitions, current_app_id())
            for ref in sorted(definition.references):
                if ref not in known and ref != segment_id:
                    problems.append(
                        FieldViolation("segment.condition", f"refers to unknown segment {ref!r}")
                    )
            graph = {sid: parse(d).references for sid, d in known.items()}
            graph[segment_id] = definition.references
            cycle = find_cycle(segment_id, graph)
            if cycle:
                problems.append(
                    FieldViolation(
                        "segment.condition", "segment references would loop: " + " -> ".join(cycle)
                    )
                )
        if problems:
            await abort(context, invalid_argument(problems))
        return data

    async def CreateSegment(
        self, request: segments_pb2.CreateSegmentRequest, context: grpc.aio.ServicerContext
    ) -> segments_pb2.CreateSegmentResponse:
        app_id = current_app_id()
        data = await self._validated(context, request.segment, request.segment_id)
        segment = Segment(
            app_id=app_id,
            segment_id=request.segment_id,
            display_name=request.segment.display_name or request.segment_id,
            description=request.segment.description,
            definition=data,
        )
        try:
            recordings = await asyncio.to_thread(self._log.save, segment)
        except IntegrityError:
            await abort(context, already_exists(f"segment {request.segment_id!r} exists"))
        return segments_pb2.CreateSegmentResponse(
            segment=self._written(segment, data, recordings[-1].notification.id)
        )

    def _written(
        self, segment: Segment, data: dict[str, Any], position: int
    ) -> segments_pb2.Segment:
        return segments_pb2.Segment(
            segment_id=segment.segment_id,
            display_name=segment.display_name,
            description=segment.description,
            condition=condition_from_dict(data),
            version=segment.definition_version,
            state=segments_pb2.Segment.STATE_BUILDING
            if segment.definition_version == 1
            else segments_pb2.Segment.STATE_ACTIVE,
            building_version=segment.definition_version,
            defined_position=position,
        )

    async def _load(self, context: grpc.aio.ServicerContext, segment_id: str) -> Segment:
        try:
            return await asyncio.to_thread(
                self._log.repository.get, segment_uuid(current_app_id(), segment_id)
            )
        except Exception:
            await abort(context, not_found(f"no segment {segment_id!r} in this app"))

    async def UpdateSegment(
        self, request: segments_pb2.UpdateSegmentRequest, context: grpc.aio.ServicerContext
    ) -> segments_pb2.UpdateSegmentResponse:
        segment_id = request.segment.segment_id
        data = await self._validated(context, request.segment, segment_id)
        segment = await self._load(context, segment_id)
        if request.expected_version and request.expected_version != segment.definition_version:
            await abort(
                context,
                failed_precondition(
                    f"segment is at version {segment.definition_version},"
                    f" not {request.expected_version}",
                    "VERSION_CONFLICT",
                ),
            )
        try:
            segment.redefine(
                request.segment.display_name or segment.display_name,
                request.segment.description,
                data,
                request.silent,
            )
            recordings = await asyncio.to_thread(self._log.save, segment)
        except SegmentArchivedError as error:
            await abort(context, failed_precondition(str(error), "ARCHIVED"))
        except IntegrityError:
            await abort(
                context,
                failed_precondition("the segment changed meanwhile; retry", "VERSION_CONFLICT"),
            )
        return segments_pb2.UpdateSegmentResponse(
            segment=self._written(segment, data, recordings[-1].notification.id)
        )

    async def ArchiveSegment(
        self, request: segments_pb2.ArchiveSegmentRequest, context: grpc.aio.ServicerContext
    ) -> segments_pb2.ArchiveSegmentResponse:
        segment = await self._load(context, request.segment_id)
        try:
            segment.archive()
            await asyncio.to_thread(self._log.save, segment)
        except SegmentArchivedError as error:
            await abort(context, failed_precondition(str(error), "ARCHIVED"))
        except IntegrityError:
            await abort(
                context,
                failed_precondition("the segment changed meanwhile; retry", "VERSION_CONFLICT"),
            )
        return segments_pb2.ArchiveSegmentResponse(
            segment=segments_pb2.Segment(
                segment_id=segment.segment_id,
                display_name=segment.display_name,
                description=segment.description,
                version=segment.definition_version,
                state=segments_pb2.Segment.STATE_ARCHIVED,
            )
        )

    # ---- reading ---------------------------------------------------------------------

    async def GetSegment(
        self, request: segments_pb2.GetSegmentRequest, context: grpc.aio.ServicerContext
    ) -> segments_pb2.GetSegmentResponse:
        await self._caught_up(context, request.min_position)
        app_id = current_app_id()
        row = await asyncio.to_thread(self._queries.segment, app_id, request.segment_id)
        if row is None:
            await abort(context, not_found(f"no segment {request.segment_id!r} in this app"))
        version = request.version or row["latest_version"]
        version_row = await asyncio.to_thread(
            self._queries.version, app_id, request.segment_id, version
        )
        if version_row is None:
            await abort(
                context, not_found(f"segment {request.segment_id!r} has no version {version}")
            )
        return segments_pb2.GetSegmentResponse(segment=segment_pb(row, version_row))

    async def ListSegments(
        self, request: segments_pb2.ListSegmentsRequest, context: grpc.aio.ServicerContext
    ) -> segments_pb2.ListSegmentsResponse:
        cursor = await self._cursor(context, request.page_token, request.page_size)
        size = page_size(request.page_size)
        rows = await asyncio.to_thread(
            self._queries.segments, current_app_id(), cursor or "", size + 1, request.show_archived
        )
        more = len(rows) > size
        rows = rows[:size]
        return segments_pb2.ListSegmentsResponse(
            segments=[segment_pb(r, None) for r in rows],
            next_page_token=encode_token({"after": rows[-1]["segment_id"]}) if more else "",
        )

    async def _cursor(self, context: grpc.aio.ServicerContext, token: str, size: int) -> str | None:
        if size < 0:
            await abort(
                context, invalid_argument([FieldViolation("page_size", "must not be negative")])
            )
        try:
            cursor = decode_token(token, {"after"})
        except BadPageToken as error:
            await abort(context, invalid_argument([FieldViolation("page_token", str(error))]))
        return str(cursor["after"]) if cursor else None

    async def ListSegmentMembers(
        self,
        request: segments_pb2.ListSegmentMembersRequest,
        context: grpc.aio.ServicerContext,
    ) -> segments_pb2.ListSegmentMembersResponse:
        cursor = await self._cursor(context, request.page_token, request.page_size)
        await self._caught_up(context, request.min_position)
        app_id = current_app_id()
        row = await asyncio.to_thread(self._queries.segment, app_id, request.segment_id)
        if row is None:
            await abort(context, not_found(f"no segment {request.segment_id!r} in this app"))
        size = page_size(request.page_size)
        rows, total = await asyncio.to_thread(
            self._queries.members, app_id, request.segment_id, cursor or "", size + 1
        )
        more = len(rows) > size
        rows = rows[:size]
        return segments_pb2.ListSegmentMembersResponse(
            members=[
                segments_pb2.Member(user_id=r["user_id"], since_time=us_to_timestamp(r["since_us"]))
                for r in rows
            ],
            next_page_token=encode_token({"after": rows[-1]["user_id"]}) if more else "",
            total_size=total,
            version=row["active_version"],
        )

    async def CheckMembership(
        self, request: segments_pb2.CheckMembershipRequest, context: grpc.aio.ServicerContext
    ) -> segments_pb2.CheckMembershipResponse:
        if not request.user_id:
            await abort(context, invalid_argument([FieldViolation("user_id", "is required")]))
        position = await self._caught_up(context, request.min_position)
        app_id = current_app_id()
        segment = await asyncio.to_thread(self._queries.segment, app_id, request.segment_id)
        if segment is None:
            await abort(context, not_found(f"no segment {request.segment_id!r} in this app"))
        row = await asyncio.to_thread(
            self._queries.membership, app_id, request.segment_id, request.user_id
        )
        return segments_pb2.CheckMembershipResponse(
            member=row is not None,
            since_time=us_to_timestamp(row["since_us"]) if row else None,
            version=row["version"] if row else segment["active_version"],
            position=position,
        )

    async def ListUserSegments(
        self, request: segments_pb2.ListUserSegmentsRequest, context: grpc.aio.ServicerContext
    ) -> segments_pb2.ListUserSegmentsResponse:
        if not request.user_id:
            await abort(context, invalid_argument([FieldViolation("user_id", "is required")]))
        position = await self._caught_up(context, request.min_position)
        rows = await asyncio.to_thread(
            self._queries.user_segments, current_app_id(), request.user_id
        )
        return segments_pb2.ListUserSegmentsResponse(
            memberships=[
                segments_pb2.Membership(
                    segment_id=r["segment_id"],
                    version=r["version"],
                    since_time=us_to_timestamp(r["since_us"]),
                )
                for r in rows
            ],
            position=position,
        )

    async def WatchMembershipChanges(
        self,
        request: segments_pb2.WatchMembershipChangesRequest,
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[segments_pb2.WatchMembershipChangesResponse]:
        app_id = current_app_id()
        try:
            cursor = decode_token(request.after_cursor, {"id"})
        except BadPageToken as error:
            await abort(context, invalid_argument([FieldViolation("after_cursor", str(error))]))
        after_id = int(cursor["id"]) if cursor else 0
        while not context.done():
            rows = await asyncio.to_thread(
                self._queries.membership_changes,
                app_id,
                request.segment_id,
                after_id,
                request.after_position,
                500,
            )
            for row in rows:
                after_id = row["id"]
                yield segments_pb2.WatchMembershipChangesResponse(
                    change=membership_changed(row), cursor=encode_token({"id": after_id})
                )
            if len(rows) < 500:
                await asyncio.sleep(self._watch_poll_s)
