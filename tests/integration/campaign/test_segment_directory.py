"""Campaigns on segments that do not exist are refused, asked of a real projector's
SegmentService with the caller's key: a segment created a moment ago is found, another
app's is not, an archived one is refused, and a projector that is down means UNAVAILABLE."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from cohortflow.campaigns.v1 import campaigns_pb2_grpc
from cohortflow.segments.v1 import segments_pb2, segments_pb2_grpc

from services.common.grpc.errors import bad_request_of
from services.devstack.embedded import free_port
from tests.integration.campaign.conftest import KEYS, NEWS, SHOP, AppFactory
from tests.integration.campaign.helpers import BUYERS, create
from tests.support.campaign import campaign
from tests.support.projector import in_process_projector


@pytest.fixture
async def projector(database_url: str, nats_server: Any) -> AsyncIterator[str]:
    """Where a projector in this process (campaign's apps and keys) serves SegmentService."""
    async with in_process_projector(database_url, nats_server.url, KEYS) as running:
        yield running.address


async def refusal(stub: Any, segment_id: str, metadata=SHOP) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(stub, campaign(segment_id=segment_id), metadata=metadata)
    violations = bad_request_of(caught.value)
    return caught.value.code(), violations[0][1] if violations else caught.value.details() or ""


async def test_segments_are_checked_with_the_projector_for_the_callers_app(
    start_app: AppFactory, projector: str
) -> None:
    app = await start_app(segments=None, CAMPAIGN_SEGMENTS_ADDRESS=projector)
    async with (
        grpc.aio.insecure_channel(projector) as to_projector,
        grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as to_campaign,
    ):
        segments = segments_pb2_grpc.SegmentServiceStub(to_projector)
        campaigns = campaigns_pb2_grpc.CampaignServiceStub(to_campaign)
        await segments.CreateSegment(
            segments_pb2.CreateSegmentRequest(
                segment_id="buyers", segment=segments_pb2.Segment(condition=BUYERS)
            ),
            metadata=SHOP,
        )
        # At once: the campaign service waits for the projector to have read the log.
        assert await create(campaigns, campaign(segment_id="buyers"))
        code, problem = await refusal(campaigns, "ghosts")
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "does not exist" in problem
        # Another app's segment of the same name is not there for this app.
        code, problem = await refusal(campaigns, "buyers", metadata=NEWS)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "does not exist" in problem

        await segments.ArchiveSegment(
            segments_pb2.ArchiveSegmentRequest(segment_id="buyers"), metadata=SHOP
        )
        for _ in range(400):
            reply = await segments.GetSegment(
                segments_pb2.GetSegmentRequest(segment_id="buyers"), metadata=SHOP
            )
            if reply.segment.state == segments_pb2.Segment.STATE_ARCHIVED:
                break
            await asyncio.sleep(0.05)
        code, problem = await refusal(campaigns, "buyers")
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "archived" in problem


async def test_a_projector_that_does_not_answer_makes_creating_unavailable(
    start_app: AppFactory,
) -> None:
    nobody = f"127.0.0.1:{free_port()}"
    app = await start_app(
        segments=None, CAMPAIGN_SEGMENTS_ADDRESS=nobody, CAMPAIGN_HTTP_TIMEOUT_S=1
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        code, details = await refusal(campaigns_pb2_grpc.CampaignServiceStub(channel), "buyers")
    assert code == grpc.StatusCode.UNAVAILABLE and nobody in details
