"""SegmentService: definitions go to the log; answers come from the read models."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from cohortflow.segments.v1 import segments_pb2, segments_pb2_grpc
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError
from google.protobuf import duration_pb2

from services.common.grpc.auth import current_app_id
from services.common.grpc.errors import (
    FieldViolation,
    abort,
    already_exists,
    failed_precondition,
    invalid_argument,
    segment_not_found,
)
from services.common.grpc.paging import BadPageToken, decode_token, encode_token, page_size
from services.common.segment_wire import condition_from_dict, condition_to_dict
from services.common.segments.definition import (
    LIMITS,
    DefinitionError,
    find_cycle,
    parse,
)
from services.eventlog.segments import Segment, SegmentArchivedError, segment_uuid
from services.eventlog.store import EventLog
from services.projector.adapters.segment_queries import HistoryQueries, SegmentQueries
from services.projector.grpc.history_calls import run_query
from services.projector.grpc.segment_messages import (
    build_progress,
    membership_changed,
    now_us,
    segment_pb,
    us_to_timestamp,
)
from services.projector.grpc.segment_requests import (
    create_id_problems,
    segment_id_problems,
    text_field_problems,
)

_INNER_ID = "segment.segment_id"


class SegmentServicer(segments_pb2_grpc.SegmentServiceServicer):
    def __init__(
        self,
        log: EventLog,
        queries: SegmentQueries,
        history: HistoryQueries,
        caught_up: Callable[[grpc.aio.ServicerContext, int], Any],
        *,
        watch_poll_s: float = 0.2,
    ) -> None:
        self._log = log
        self._queries = queries
        self._history = history
        self._caught_up = caught_up
        self._watch_poll_s = watch_poll_s

    # ---- writing ---------------------------------------------------------------------

    async def _validated(
        self,
        context: grpc.aio.ServicerContext,
        segment: segments_pb2.Segment,
        segment_id: str,
        id_problems: list[FieldViolation],
    ) -> dict[str, Any]:
        """The dict form of the request's condition, or abort naming every bad field."""
        problems = [*id_problems, *text_field_problems(segment)]
        data = condition_to_dict(segment.condition)
        try:
            definition = parse(data, "segment.condition", limits=LIMITS)
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
        data = await self._validated(
            context, request.segment, request.segment_id, create_id_problems(request)
        )
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
        except AggregateNotFoundError:
            await abort(context, segment_not_found(segment_id))

    async def UpdateSegment(
        self, request: segments_pb2.UpdateSegmentRequest, context: grpc.aio.ServicerContext
    ) -> segments_pb2.UpdateSegmentResponse:
        segment_id = request.segment.segment_id
        data = await self._validated(
            context, request.segment, segment_id, segment_id_problems(segment_id, _INNER_ID)
        )
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
            await abort(context, segment_not_found(request.segment_id))
        version = request.version or row["latest_version"]
        version_row = await asyncio.to_thread(
            self._queries.version, app_id, request.segment_id, version
        )
        if version_row is None:
            await abort(context, segment_not_found(request.segment_id, version))
        segment = segment_pb(row, version_row)
        progress = await self._progress(app_id, request.segment_id, row["latest_version"])
        if progress is not None:
            segment.build.CopyFrom(progress)
        return segments_pb2.GetSegmentResponse(segment=segment)

    async def _progress(
        self, app_id: str, segment_id: str, version: int
    ) -> segments_pb2.BuildProgress | None:
        row = await asyncio.to_thread(self._queries.segment, app_id, segment_id)
        if row is None:
            return None
        version_row = await asyncio.to_thread(self._queries.version, app_id, segment_id, version)
        if version_row is None:
            return None
        build = await asyncio.to_thread(self._queries.build_progress, app_id, segment_id, version)
        return build_progress(row, version_row, build, now_us())

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

    async def _cursor(
        self, context: grpc.aio.ServicerContext, token: str, size: int, kind: type = str
    ) -> Any:
        """The `after` of a page token (None for the first page), of type `kind`."""
        if size < 0:
            await abort(
                context, invalid_argument([FieldViolation("page_size", "must not be negative")])
            )
        try:
            cursor = decode_token(token, {"after": kind})
        except BadPageToken as error:
            await abort(context, invalid_argument([FieldViolation("page_token", str(error))]))
        return cursor["after"] if cursor else None

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
            await abort(context, segment_not_found(request.segment_id))
        size = page_size(request.page_size)
        if request.HasField("as_of_time"):
            rows, total = await run_query(
                context,
                self._history.timeout_s,
                self._history.members_as_of,
                app_id,
                request.segment_id,
                request.as_of_time.ToMicroseconds(),
                cursor or "",
                size + 1,
            )
        else:
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
            await abort(context, segment_not_found(request.segment_id))
        if request.HasField("as_of_time"):
            row = await run_query(
                context,
                self._history.timeout_s,
                self._history.membership_as_of,
                app_id,
                request.segment_id,
                request.user_id,
                request.as_of_time.ToMicroseconds(),
            )
        else:
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
            cursor = decode_token(request.after_cursor, {"id": int})
        except BadPageToken as error:
            await abort(context, invalid_argument([FieldViolation("after_cursor", str(error))]))
        after_id = cursor["id"] if cursor else 0
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

    async def PreviewSegment(
        self, request: segments_pb2.PreviewSegmentRequest, context: grpc.aio.ServicerContext
    ) -> segments_pb2.PreviewSegmentResponse:
        if request.sample_size < 0 or request.sample_size > 1000:
            await abort(
                context,
                invalid_argument([FieldViolation("sample_size", "must be between 0 and 1000")]),
            )
        segment_id = request.segment.segment_id or "draft"
        problems = segment_id_problems(segment_id, _INNER_ID) if request.segment.segment_id else []
        data = await self._validated(context, request.segment, segment_id, problems)
        await self._caught_up(context, request.min_position)
        app_id = current_app_id()
        started = time.perf_counter()
        result = await run_query(
            context,
            self._history.timeout_s,
            self._history.preview,
            app_id,
            segment_id,
            parse(data),
            request.sample_size or 20,
        )
        took = duration_pb2.Duration()
        took.FromMicroseconds(int((time.perf_counter() - started) * 1e6))
        live = await asyncio.to_thread(self._queries.segment, app_id, segment_id)
        return segments_pb2.PreviewSegmentResponse(
            members=result["members"],
            sample_user_ids=result["sample"],
            entering=result["entering"],
            exiting=result["exiting"],
            entering_sample=result["enter_sample"],
            exiting_sample=result["exit_sample"],
            position=result["position"],
            as_of_time=us_to_timestamp(result["now_us"]),
            live_version=live["active_version"] if live else 0,
            took=took,
        )

    async def WatchSegmentBuild(
        self, request: segments_pb2.WatchSegmentBuildRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[segments_pb2.WatchSegmentBuildResponse]:
        app_id = current_app_id()
        await self._caught_up(context, request.min_position)
        row = await asyncio.to_thread(self._queries.segment, app_id, request.segment_id)
        if row is None:
            await abort(context, segment_not_found(request.segment_id))
        version = request.version or row["latest_version"]
        last = None
        while not context.done():
            progress = await self._progress(app_id, request.segment_id, version)
            if progress is None:
                await abort(context, segment_not_found(request.segment_id, version))
            shown = (progress.status, progress.events_done)
            if shown != last:
                last = shown
                yield segments_pb2.WatchSegmentBuildResponse(build=progress)
            if progress.status in ("live", "archived", "failed"):
                return
            current = await asyncio.to_thread(self._queries.segment, app_id, request.segment_id)
            if current is not None and current["latest_version"] != version:
                return  # superseded: this version will never go live
            await asyncio.sleep(0.25)

    async def RestoreSegmentVersion(
        self,
        request: segments_pb2.RestoreSegmentVersionRequest,
        context: grpc.aio.ServicerContext,
    ) -> segments_pb2.RestoreSegmentVersionResponse:
        app_id = current_app_id()
        old = await asyncio.to_thread(
            self._queries.version, app_id, request.segment_id, request.version
        )
        if old is None:
            await abort(
                context,
                segment_not_found(request.segment_id, request.version),
            )
        restored = segments_pb2.Segment(
            segment_id=request.segment_id,
            display_name=old["display_name"],
            description=old["description"],
            condition=condition_from_dict(old["definition"]),
        )
        reply = await self.UpdateSegment(
            segments_pb2.UpdateSegmentRequest(segment=restored, silent=request.silent), context
        )
        return segments_pb2.RestoreSegmentVersionResponse(segment=reply.segment)

    async def ListMembershipHistory(
        self,
        request: segments_pb2.ListMembershipHistoryRequest,
        context: grpc.aio.ServicerContext,
    ) -> segments_pb2.ListMembershipHistoryResponse:
        if not request.user_id:
            await abort(context, invalid_argument([FieldViolation("user_id", "is required")]))
        cursor = await self._cursor(context, request.page_token, request.page_size, int)
        await self._caught_up(context, request.min_position)
        size = page_size(request.page_size)
        rows = await run_query(
            context,
            self._history.timeout_s,
            self._history.membership_history,
            current_app_id(),
            request.user_id,
            request.segment_id,
            cursor or 0,
            size + 1,
        )
        more = len(rows) > size
        rows = rows[:size]
        return segments_pb2.ListMembershipHistoryResponse(
            changes=[membership_changed(r) for r in rows],
            next_page_token=encode_token({"after": rows[-1]["sequence"]}) if more else "",
        )
