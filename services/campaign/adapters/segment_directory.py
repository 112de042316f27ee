"""Does a segment exist? Asked of the projector's SegmentService, never of its tables.

The lookup carries the caller's own API key, so it sees exactly the caller's app. A
segment created a moment ago may not be in the projector's read model yet: when the
first answer is NOT_FOUND, the question is asked again with `min_position` at the
event log's head, which the projector answers once it has read everything written
before (its read wait bounds how long).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc
from cohortflow.segments.v1 import segments_pb2
from cohortflow.segments.v1.segments_pb2_grpc import SegmentServiceStub

from services.campaign.domain.ports import ARCHIVED, LIVE, MISSING, SegmentsUnavailable

# Answers that say the segment cannot exist in this app (no such id, or not a valid one).
_ABSENT = frozenset({grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT})


class GrpcSegmentDirectory:
    def __init__(self, address: str, head_position: Callable[[], int], timeout_s: float) -> None:
        self._address = address
        self._head_position = head_position
        self._timeout_s = timeout_s
        self._channel: grpc.aio.Channel | None = None

    def _stub(self) -> SegmentServiceStub:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self._address)
        return SegmentServiceStub(self._channel)

    async def _get(self, authorization: str, segment_id: str, min_position: int = 0) -> str:
        request = segments_pb2.GetSegmentRequest(segment_id=segment_id, min_position=min_position)
        metadata = (("authorization", authorization),) if authorization else ()
        try:
            reply = await self._stub().GetSegment(
                request, metadata=metadata, timeout=self._timeout_s
            )
        except grpc.aio.AioRpcError as error:
            if error.code() in _ABSENT:
                return MISSING
            msg = f"the projector's SegmentService at {self._address} answered {error.code().name}"
            raise SegmentsUnavailable(msg) from None
        return ARCHIVED if reply.segment.state == segments_pb2.Segment.STATE_ARCHIVED else LIVE

    async def lookup(self, authorization: str, segment_id: str) -> str:
        found = await self._get(authorization, segment_id)
        if found != MISSING:
            return found
        head = await asyncio.to_thread(self._head_position)
        return await self._get(authorization, segment_id, head)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()


class UncheckedSegments:
    """For a campaign service run without a projector (CAMPAIGN_SEGMENTS_ADDRESS empty):
    every segment is taken to exist."""

    async def lookup(self, authorization: str, segment_id: str) -> str:
        return LIVE

    async def close(self) -> None:
        return None
