"""SegmentService: commands go to the segment command layer; answers come from the read models.

The servicer only translates: requests into drafts and commands
(`services.projector.service_layer.segment_commands`), rows and aggregates into messages
(`segment_messages`); the membership reads are in `segment_membership`. Refusals are raised,
not aborted: the request guard answers each with its status from the one table in
`services.common.grpc.errors`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from cohortflow.segments.v1 import segments_pb2, segments_pb2_grpc
from google.protobuf import duration_pb2

from services.common.domain_errors import FieldViolation, InvalidInput
from services.common.grpc.auth import current_app_id
from services.common.grpc.paging import encode_token, page_size
from services.common.segment_wire import FINAL_BUILD_STATUSES, condition_to_dict
from services.projector.adapters.history_queries import HistoryQueries
from services.projector.adapters.segment_queries import SegmentQueries
from services.projector.grpc.history_calls import run_query
from services.projector.grpc.segment_membership import MembershipCalls, page_after
from services.projector.grpc.segment_messages import (
    archived_pb,
    build_progress,
    now_us,
    segment_pb,
    us_to_timestamp,
    written_pb,
)
from services.projector.grpc.segment_requests import (
    INNER_ID,
    create_id_problems,
    segment_id_problems,
)
from services.projector.service_layer.segment_checks import Draft
from services.projector.service_layer.segment_commands import SegmentCommands, SegmentNotFound

# The id a preview's draft has when its request names none.
DRAFT_ID = "draft"
# How often a build being watched is looked at again.
BUILD_POLL_S = 0.25


def draft_of(segment: segments_pb2.Segment, segment_id: str) -> Draft:
    """The command layer's draft of a segment in a request."""
    return Draft(
        segment_id=segment_id,
        display_name=segment.display_name,
        description=segment.description,
        condition=condition_to_dict(segment.condition),
    )


class SegmentServicer(MembershipCalls, segments_pb2_grpc.SegmentServiceServicer):
    """Segment definitions (commands, reads, previews, builds) and, from MembershipCalls,
    their members."""

    def __init__(
        self,
        commands: SegmentCommands,
        queries: SegmentQueries,
        history: HistoryQueries,
        caught_up: Callable[[grpc.aio.ServicerContext, int], Any],
        *,
        watch_poll_s: float = 0.2,
    ) -> None:
        self._commands = commands
        self._queries = queries
        self._history = history
        self._caught_up = caught_up
        self._watch_poll_s = watch_poll_s

    # ---- writing ---------------------------------------------------------------------

    async def CreateSegment(
        self, request: segments_pb2.CreateSegmentRequest, context: grpc.aio.ServicerContext
    ) -> segments_pb2.CreateSegmentResponse:
        draft = draft_of(request.segment, request.segment_id)
        written = await asyncio.to_thread(
            self._commands.create, current_app_id(), draft, create_id_problems(request)
        )
        return segments_pb2.CreateSegmentResponse(
            segment=written_pb(written.segment, written.position)
        )

    async def UpdateSegment(
        self, request: segments_pb2.UpdateSegmentRequest, context: grpc.aio.ServicerContext
    ) -> segments_pb2.UpdateSegmentResponse:
        segment_id = request.segment.segment_id
        app_id = current_app_id()
        written = await asyncio.to_thread(
            lambda: self._commands.update(
                app_id,
                draft_of(request.segment, segment_id),
                silent=request.silent,
                expected_version=request.expected_version,
                problems=segment_id_problems(segment_id, INNER_ID),
            )
        )
        return segments_pb2.UpdateSegmentResponse(
            segment=written_pb(written.segment, written.position)
        )

    async def ArchiveSegment(
        self, request: segments_pb2.ArchiveSegmentRequest, context: grpc.aio.ServicerContext
    ) -> segments_pb2.ArchiveSegmentResponse:
        segment = await asyncio.to_thread(
            self._commands.archive, current_app_id(), request.segment_id
        )
        return segments_pb2.ArchiveSegmentResponse(segment=archived_pb(segment))

    async def RestoreSegmentVersion(
        self,
        request: segments_pb2.RestoreSegmentVersionRequest,
        context: grpc.aio.ServicerContext,
    ) -> segments_pb2.RestoreSegmentVersionResponse:
        app_id = current_app_id()
        written = await asyncio.to_thread(
            lambda: self._commands.restore(
                app_id, request.segment_id, request.version, silent=request.silent
            )
        )
        return segments_pb2.RestoreSegmentVersionResponse(
            segment=written_pb(written.segment, written.position)
        )

    # ---- reading ---------------------------------------------------------------------

    async def GetSegment(
        self, request: segments_pb2.GetSegmentRequest, context: grpc.aio.ServicerContext
    ) -> segments_pb2.GetSegmentResponse:
        await self._caught_up(context, request.min_position)
        app_id = current_app_id()
        row = await asyncio.to_thread(self._queries.segment, app_id, request.segment_id)
        if row is None:
            raise SegmentNotFound(request.segment_id)
        version = request.version or row["latest_version"]
        version_row = await asyncio.to_thread(
            self._queries.version, app_id, request.segment_id, version
        )
        if version_row is None:
            raise SegmentNotFound(request.segment_id, version)
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
        cursor = page_after(request.page_token, request.page_size)
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

    async def PreviewSegment(
        self, request: segments_pb2.PreviewSegmentRequest, context: grpc.aio.ServicerContext
    ) -> segments_pb2.PreviewSegmentResponse:
        if request.sample_size < 0 or request.sample_size > 1000:
            raise InvalidInput([FieldViolation("sample_size", "must be between 0 and 1000")])
        segment_id = request.segment.segment_id or DRAFT_ID
        problems = segment_id_problems(segment_id, INNER_ID) if request.segment.segment_id else []
        app_id = current_app_id()
        definition = await asyncio.to_thread(
            self._commands.check, app_id, draft_of(request.segment, segment_id), problems
        )
        await self._caught_up(context, request.min_position)
        started = time.perf_counter()
        result = await run_query(
            context,
            self._history.timeout_s,
            self._history.preview,
            app_id,
            segment_id,
            definition,
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
            raise SegmentNotFound(request.segment_id)
        version = request.version or row["latest_version"]
        last = None
        while not context.done():
            progress = await self._progress(app_id, request.segment_id, version)
            if progress is None:
                raise SegmentNotFound(request.segment_id, version)
            shown = (progress.status, progress.events_done)
            if shown != last:
                last = shown
                yield segments_pb2.WatchSegmentBuildResponse(build=progress)
            if progress.status in FINAL_BUILD_STATUSES:
                return
            current = await asyncio.to_thread(self._queries.segment, app_id, request.segment_id)
            if current is not None and current["latest_version"] != version:
                return  # superseded: this version will never go live
            await asyncio.sleep(BUILD_POLL_S)
