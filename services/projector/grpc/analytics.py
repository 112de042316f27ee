"""AnalyticsService: time series, flows and the RFM grid from the daily rollups."""

from __future__ import annotations

import asyncio
import json
import time

import grpc
from cohortflow.analytics.v1 import analytics_pb2 as pb
from cohortflow.analytics.v1 import analytics_pb2_grpc
from cohortflow.profiles.v1 import profiles_pb2
from cohortflow.types.v1 import types_pb2
from google.protobuf import timestamp_pb2

from services.common.grpc.auth import current_app_id
from services.common.grpc.errors import FieldViolation, abort, invalid_argument
from services.common.segments.definition import SEGMENT_ID
from services.common.vocabulary_wire import LIFECYCLE_STATE_PB, RFM_GROUP_PB
from services.eventlog.vocabulary import LIFECYCLE_STATES
from services.projector.adapters.rollup_queries import RollupQueries
from services.projector.adapters.rollups import DAY_US
from services.projector.domain.rfm import group_of
from services.projector.grpc.segment_requests import INNER_ID, segment_id_problems
from services.projector.grpc.segments import DRAFT_ID, draft_of
from services.projector.service_layer.segment_commands import SegmentCommands

NO_STATE = types_pb2.LIFECYCLE_STATE_UNSPECIFIED
NO_GROUP = types_pb2.RFM_GROUP_UNSPECIFIED
MAX_DAYS = 3660
MAX_SEGMENTS = 200
DEFAULT_DAYS = 90
# 0001-01-01 .. 9999-12-31, the range of google.protobuf.Timestamp.
_MIN_S, _MAX_S = -62_135_596_800, 253_402_300_799


def _counts(counts: dict[str, int]) -> list[profiles_pb2.StateCount]:
    return [
        profiles_pb2.StateCount(state=LIFECYCLE_STATE_PB[s], users=counts.get(s, 0))
        for s in LIFECYCLE_STATES
    ]


def _day_ts(day: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromMicroseconds(day * DAY_US)
    return ts


class AnalyticsServicer(analytics_pb2_grpc.AnalyticsServiceServicer):
    def __init__(self, rollups: RollupQueries, segments: SegmentCommands) -> None:
        self._rollups = rollups
        self._segments = segments

    async def _days(
        self,
        context: grpc.aio.ServicerContext,
        start: timestamp_pb2.Timestamp,
        end: timestamp_pb2.Timestamp,
        has_start: bool,
        has_end: bool,
        *,
        ordered: bool = False,
    ) -> tuple[int, int]:
        """The UTC days of a range (default: the last 90 days), or abort naming the field."""
        problems = []
        for name, ts, present in (("start_time", start, has_start), ("end_time", end, has_end)):
            if present and not (_MIN_S <= ts.seconds <= _MAX_S and 0 <= ts.nanos < 1_000_000_000):
                problems.append(FieldViolation(name, "is not a valid time"))
        if problems:
            await abort(context, invalid_argument(problems))
        end_day = end.seconds // 86_400 if has_end else int(time.time()) // 86_400
        start_day = start.seconds // 86_400 if has_start else end_day - DEFAULT_DAYS + 1
        if start_day > end_day or (ordered and start_day == end_day):
            problems.append(FieldViolation("end_time", "must be after start_time"))
        elif end_day - start_day + 1 > MAX_DAYS:
            problems.append(
                FieldViolation("start_time", f"the range spans at most {MAX_DAYS} days")
            )
        if problems:
            await abort(context, invalid_argument(problems))
        return start_day, end_day

    async def GetLifecycleSeries(
        self, request: pb.GetLifecycleSeriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetLifecycleSeriesResponse:
        start, end = await self._days(
            context,
            request.start_time,
            request.end_time,
            request.HasField("start_time"),
            request.HasField("end_time"),
        )
        series = await asyncio.to_thread(
            self._rollups.lifecycle_series, current_app_id(), start, end
        )
        position = await asyncio.to_thread(self._rollups.position)
        return pb.GetLifecycleSeriesResponse(
            days=[
                pb.LifecycleDay(
                    day_time=_day_ts(start + i),
                    counts=_counts(counts),
                    total_users=sum(counts.get(s, 0) for s in LIFECYCLE_STATES),
                )
                for i, counts in enumerate(series)
            ],
            position=position,
        )

    async def GetLifecycleFlows(
        self, request: pb.GetLifecycleFlowsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetLifecycleFlowsResponse:
        start, end = await self._days(
            context,
            request.start_time,
            request.end_time,
            request.HasField("start_time"),
            request.HasField("end_time"),
            ordered=True,
        )
        flows, at_start, at_end = await asyncio.to_thread(
            self._rollups.lifecycle_flows, current_app_id(), start, end
        )
        position = await asyncio.to_thread(self._rollups.position)
        return pb.GetLifecycleFlowsResponse(
            flows=[
                pb.LifecycleFlow(
                    from_state=LIFECYCLE_STATE_PB.get(a, NO_STATE),
                    to_state=LIFECYCLE_STATE_PB.get(b, NO_STATE),
                    users=n,
                )
                for (a, b), n in sorted(flows.items())
            ],
            start_counts=_counts(at_start),
            end_counts=_counts(at_end),
            position=position,
        )

    async def GetRfmGrid(
        self, request: pb.GetRfmGridRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetRfmGridResponse:
        groups = await asyncio.to_thread(self._rollups.rfm_groups, current_app_id())
        position = await asyncio.to_thread(self._rollups.position)
        return pb.GetRfmGridResponse(
            groups=[
                pb.RfmGroupCount(group=number, users=max(groups.get(name, 0), 0))
                for name, number in RFM_GROUP_PB.items()
                if name
            ],
            cells=[
                pb.RfmCell(
                    recency=r, frequency_monetary=fm, group=RFM_GROUP_PB[group_of(r, fm, fm)]
                )
                for r in range(5, 0, -1)
                for fm in range(1, 6)
            ],
            position=position,
        )

    async def GetRfmTransitions(
        self, request: pb.GetRfmTransitionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetRfmTransitionsResponse:
        start, end = await self._days(
            context,
            request.start_time,
            request.end_time,
            request.HasField("start_time"),
            request.HasField("end_time"),
        )
        rows = await asyncio.to_thread(self._rollups.rfm_transitions, current_app_id(), start, end)
        position = await asyncio.to_thread(self._rollups.position)
        return pb.GetRfmTransitionsResponse(
            transitions=[
                pb.RfmTransitionCount(
                    from_group=RFM_GROUP_PB.get(a, NO_GROUP),
                    to_group=RFM_GROUP_PB.get(b, NO_GROUP),
                    changes=n,
                )
                for a, b, n in rows
            ],
            position=position,
        )

    async def GetSegmentSizeSeries(
        self, request: pb.GetSegmentSizeSeriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetSegmentSizeSeriesResponse:
        ids = list(request.segment_ids)
        problems = []
        if not 1 <= len(ids) <= MAX_SEGMENTS:
            problems.append(FieldViolation("segment_ids", f"give 1 to {MAX_SEGMENTS} segment ids"))
        problems += [
            FieldViolation(
                f"segment_ids[{i}]", "lowercase letters, digits and -, 1 to 63 characters"
            )
            for i, sid in enumerate(ids[:MAX_SEGMENTS])
            if not SEGMENT_ID.fullmatch(sid)
        ]
        if problems:
            await abort(context, invalid_argument(problems[:20]))
        start, end = await self._days(
            context,
            request.start_time,
            request.end_time,
            request.HasField("start_time"),
            request.HasField("end_time"),
        )
        sizes = await asyncio.to_thread(
            self._rollups.segment_sizes, current_app_id(), list(dict.fromkeys(ids)), start, end
        )
        position = await asyncio.to_thread(self._rollups.position)
        return pb.GetSegmentSizeSeriesResponse(
            series=[
                pb.SegmentSizeSeries(segment_id=sid, sizes=sizes[sid], start_time=_day_ts(start))
                for sid in ids
            ],
            position=position,
        )

    async def ValidateSegment(
        self, request: pb.ValidateSegmentRequest, context: grpc.aio.ServicerContext
    ) -> pb.ValidateSegmentResponse:
        # The very checks of CreateSegment/UpdateSegment (and PreviewSegment's default id).
        segment_id = request.segment.segment_id or DRAFT_ID
        problems = segment_id_problems(segment_id, INNER_ID) if request.segment.segment_id else []
        draft = draft_of(request.segment, segment_id)
        await asyncio.to_thread(self._segments.check, current_app_id(), draft, problems)
        return pb.ValidateSegmentResponse(
            definition_json=json.dumps(draft.condition, sort_keys=True)
        )
