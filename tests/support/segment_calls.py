"""Calling SegmentService in tests: definitions, members, states, and waiting for them."""

from __future__ import annotations

import asyncio
from typing import Any

from cohortflow.segments.v1 import segments_pb2

from services.common.segment_wire import condition_from_dict
from services.eventlog.store import EventLog
from tests.support.ingest import auth


def append(log: EventLog, *events: object) -> int:
    outcome = log.append_new([log.encode(e) for e in events])
    return max(outcome.inserted.values())


async def until(predicate: Any, within: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def segment(condition: dict[str, Any], name: str = "") -> segments_pb2.Segment:
    return segments_pb2.Segment(display_name=name, condition=condition_from_dict(condition))


async def members(stub: Any, segment_id: str, key: str = "key-app") -> set[str]:
    out: set[str] = set()
    token = ""
    while True:
        reply = await stub.ListSegmentMembers(
            segments_pb2.ListSegmentMembersRequest(
                segment_id=segment_id, page_size=2, page_token=token
            ),
            metadata=auth(key),
        )
        out.update(m.user_id for m in reply.members)
        token = reply.next_page_token
        if not token:
            return out


async def state_of(stub: Any, segment_id: str, min_position: int = 0) -> segments_pb2.Segment:
    reply = await stub.GetSegment(
        segments_pb2.GetSegmentRequest(segment_id=segment_id, min_position=min_position),
        metadata=auth("key-app"),
    )
    return reply.segment
