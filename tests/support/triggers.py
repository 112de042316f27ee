"""Campaign triggers for pipeline tests: how to define one through the public APIs, and
which published changes fire it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
from cohortflow.campaigns.v1 import campaigns_pb2 as pb
from cohortflow.changes.v1 import changes_pb2
from cohortflow.segments.v1 import segments_pb2, segments_pb2_grpc
from cohortflow.types.v1 import types_pb2

from tests.support.campaign import auth
from tests.support.changes import Received
from tests.support.pipeline import Pipeline
from tests.support.waiting import eventually

SHOP = auth("key-shop")


@dataclass(frozen=True)
class TriggerCase:
    """How campaigns are triggered in a pipeline test, and which changes trigger them."""

    make: Callable[[Pipeline], Awaitable[pb.Trigger]]
    triggers: Callable[[Received], bool]


async def lifecycle_new_trigger(pipeline: Pipeline) -> pb.Trigger:
    return pb.Trigger(lifecycle=pb.LifecycleTrigger(to_states=[types_pb2.LIFECYCLE_STATE_NEW]))


def is_new_user(received: Received) -> bool:
    message = received.message
    return (
        isinstance(message, changes_pb2.LifecycleChanged)
        and message.to_state == types_pb2.LIFECYCLE_STATE_NEW
    )


SEGMENT_ID = "opened-the-app"


async def segment_entered_trigger(pipeline: Pipeline) -> pb.Trigger:
    """Segments: define, through the projector's SegmentService, a segment every user of
    these tests enters with their first event, wait until it is built and live, then
    trigger on entering it."""
    opened = segments_pb2.Condition(
        events=segments_pb2.EventCondition(
            name="App Opened",
            aggregate=segments_pb2.EventCondition.AGGREGATE_COUNT,
            op=">=",
            value=1,
        )
    )
    async with grpc.aio.insecure_channel(pipeline.projector_address) as channel:
        segments = segments_pb2_grpc.SegmentServiceStub(channel)
        created = await segments.CreateSegment(
            segments_pb2.CreateSegmentRequest(
                segment_id=SEGMENT_ID,
                segment=segments_pb2.Segment(display_name="Opened the app", condition=opened),
            ),
            metadata=SHOP,
        )

        async def live() -> bool:
            reply = await segments.GetSegment(
                segments_pb2.GetSegmentRequest(
                    segment_id=SEGMENT_ID, min_position=created.segment.defined_position
                ),
                metadata=SHOP,
            )
            return reply.segment.state == segments_pb2.Segment.STATE_ACTIVE

        await eventually(live, "the segment built and live")
    return pb.Trigger(
        segment=pb.SegmentTrigger(
            segment_id=SEGMENT_ID, direction=pb.SegmentTrigger.DIRECTION_ENTERED
        )
    )


def entered_segment(received: Received) -> bool:
    message = received.message
    return (
        isinstance(message, changes_pb2.MembershipChanged)
        and message.segment_id == SEGMENT_ID
        and message.direction == changes_pb2.MembershipChanged.DIRECTION_ENTERED
    )
