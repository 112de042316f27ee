"""An in-process campaign service on real PostgreSQL and NATS, driven step by step."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from cohortflow.campaigns.v1 import campaigns_pb2_grpc, inbox_pb2_grpc

from services.campaign.bootstrap import CampaignApp, start_campaign
from services.campaign.config import CampaignSettings
from services.common.grpc.auth import ApiKeys
from services.common.jetstream import ChangeStreamSettings
from tests.support.campaign import (
    LOOPBACK,
    FakeClock,
    FakeSegmentDirectory,
    FakeSegmentMembers,
    at_us,
    auth,
    unique_stream,
)
from tests.support.infra import NatsForTests

KEYS = ApiKeys([("shop", "key-shop"), ("news", "key-news")])
SHOP = auth("key-shop")
NEWS = auth("key-news")
# A Tuesday, 10:00 in Berlin.
START = at_us("2026-06-02T08:00:00+00:00")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def stream() -> ChangeStreamSettings:
    return unique_stream()


@pytest.fixture
def segments() -> FakeSegmentMembers:
    return FakeSegmentMembers()


@pytest.fixture
def directory() -> FakeSegmentDirectory:
    return FakeSegmentDirectory()


def settings_for(database_url: str, nats_url: str, **overrides: Any) -> CampaignSettings:
    values: dict[str, Any] = {
        "DATABASE_URL": database_url,
        "NATS_URL": nats_url,
        "CAMPAIGN_LISTEN": "127.0.0.1:0",
        "CAMPAIGN_METRICS_PORT": 0,
        "CAMPAIGN_CONSUMER": "campaign-test",
        "CAMPAIGN_WEBHOOK_SECRETS": "shop:whsec-shop",
        "CAMPAIGN_RETRY_BASE_S": 1,
        "CAMPAIGN_MAX_ATTEMPTS": 3,
        "CAMPAIGN_WEBHOOK_ALLOWED_NETWORKS": LOOPBACK,
        **overrides,
    }
    return CampaignSettings(**values)


AppFactory = Callable[..., Awaitable[CampaignApp]]


@pytest.fixture
async def start_app(
    database_url: str,
    nats_server: NatsForTests,
    stream: ChangeStreamSettings,
    clock: FakeClock,
    segments: FakeSegmentMembers,
    directory: FakeSegmentDirectory,
) -> AsyncIterator[AppFactory]:
    """Start campaign services (loops off, driven by the test) with setting overrides."""
    started: list[CampaignApp] = []

    async def start(**overrides: Any) -> CampaignApp:
        # segment_members=None: the service's own adapter (the projector's read model);
        # segments=None: the projector's SegmentService at CAMPAIGN_SEGMENTS_ADDRESS.
        members = overrides.pop("segment_members", segments)
        known = overrides.pop("segments", directory)
        renderer = overrides.pop("renderer", None)
        app = await start_campaign(
            settings_for(database_url, nats_server.url, **overrides),
            KEYS,
            stream=stream,
            clock=clock,
            segment_members=members,
            segments=known,
            renderer=renderer,
            background=False,
        )
        started.append(app)
        return app

    yield start
    for app in started:
        await app.stop(0.5)


@pytest.fixture
async def campaign_app(start_app: AppFactory, request: pytest.FixtureRequest) -> CampaignApp:
    return await start_app(**getattr(request, "param", {}))


@pytest.fixture
async def channel(campaign_app: CampaignApp) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{campaign_app.port}") as ch:
        yield ch


@pytest.fixture
def campaigns(channel: grpc.aio.Channel) -> campaigns_pb2_grpc.CampaignServiceStub:
    return campaigns_pb2_grpc.CampaignServiceStub(channel)


@pytest.fixture
def inbox(channel: grpc.aio.Channel) -> inbox_pb2_grpc.InboxServiceStub:
    return inbox_pb2_grpc.InboxServiceStub(channel)
