"""Campaign's health and backlog gauges, against real NATS and PostgreSQL outages.

The whole service ("") is SERVING only while it can fetch changes (NATS, its consumer)
and commit decisions (its database); its API (CampaignService, InboxService) needs only
the database. The consumer gauges are JetStream's own counts; due sends are counted from
the deliveries the dispatcher has not sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from cohortflow.campaigns.v1 import campaigns_pb2 as pb
from cohortflow.types.v1 import types_pb2
from grpc_health.v1 import health_pb2

from services.campaign import metrics
from services.campaign.bootstrap import (
    CAMPAIGN_SERVICE,
    INBOX_SERVICE,
    CampaignApp,
    start_campaign,
)
from services.common.jetstream import ChangeStreamSettings
from services.common.readiness import CHECK_UP
from tests.integration.campaign.conftest import KEYS, AppFactory, settings_for
from tests.integration.campaign.helpers import create, deliver
from tests.support.campaign import (
    FakeClock,
    FakeSegmentDirectory,
    FakeSegmentMembers,
    campaign,
    membership,
    publish,
    put_profile,
)
from tests.support.infra import NatsForTests, PostgresForTests
from tests.support.outages import OwnNats, database_refusing
from tests.support.projector import health_status
from tests.support.receivers import HttpReceiver
from tests.support.waiting import eventually

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# Probe often and trip at the second failure, so outages show within seconds.
FAST = {"HEALTH_INTERVAL_S": 0.2, "HEALTH_FAILURES": 2, "HEALTH_TIMEOUT_S": 2}
API = (CAMPAIGN_SERVICE, INBOX_SERVICE)


async def _statuses(app: CampaignApp) -> dict[str, int]:
    return {name: await health_status(app.port, name) for name in ("", *API)}


def _check(name: str) -> float:
    return CHECK_UP.labels(name)._value.get()


@pytest.fixture
async def own_nats(tmp_path: Path) -> AsyncIterator[OwnNats]:
    server = OwnNats(tmp_path / "nats")
    yield server
    server.stop()


async def _start(
    database_url: str, nats_url: str, stream: ChangeStreamSettings, clock: FakeClock
) -> CampaignApp:
    app = await start_campaign(
        settings_for(database_url, nats_url, **FAST),
        KEYS,
        stream=stream,
        clock=clock,
        segment_members=FakeSegmentMembers(),
        segments=FakeSegmentDirectory(),
        background=False,
    )
    app.start_health()  # the probes only: decisions stay under the test's control
    return app


async def test_nats_away_takes_the_service_out_but_not_its_api(
    database_url: str, own_nats: OwnNats, stream: ChangeStreamSettings, clock: FakeClock
) -> None:
    app = await _start(database_url, own_nats.url, stream, clock)
    try:
        assert await _statuses(app) == dict.fromkeys(("", *API), SERVING)
        own_nats.stop()

        async def consumer_down() -> bool:
            return await _statuses(app) == {"": NOT_SERVING, **dict.fromkeys(API, SERVING)}

        await eventually(consumer_down, "NOT_SERVING overall, the API still SERVING")
        assert _check("nats") == 0 and _check("database") == 1
        own_nats.restart()
        await eventually(lambda: _all(app, SERVING), "SERVING again once NATS is back on its store")
        assert _check("nats") == 1
    finally:
        await app.stop(0.5)


async def _all(app: CampaignApp, status: int) -> bool:
    return set((await _statuses(app)).values()) == {status}


async def test_a_database_refusing_connections_takes_everything_out(
    database_url: str,
    postgres: PostgresForTests,
    nats_server: NatsForTests,
    stream: ChangeStreamSettings,
    clock: FakeClock,
) -> None:
    app = await _start(database_url, nats_server.url, stream, clock)
    try:
        assert await _all(app, SERVING)
        with database_refusing(postgres.server_url, database_url):
            await eventually(lambda: _all(app, NOT_SERVING), "NOT_SERVING, API included")
            assert _check("database") == 0
        await eventually(lambda: _all(app, SERVING), "SERVING again")
        assert _check("database") == 1
    finally:
        await app.stop(0.5)


async def test_consumer_gauges_are_jetstreams_counts(
    start_app: AppFactory, nats_server: NatsForTests, stream: ChangeStreamSettings
) -> None:
    app = await start_app()
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        for user in ("u1", "u2", "u3", "u4", "u5"):
            await publish(js, stream, membership("shop", user, "new_users"))
        await app.consumer.refresh_info()
        labels = ("campaign-test",)
        assert metrics.CONSUMER_PENDING.labels(*labels)._value.get() == 5
        assert metrics.CONSUMER_ACK_PENDING.labels(*labels)._value.get() == 0
        assert metrics.CONSUMER_MAX_ACK_PENDING.labels(*labels)._value.get() >= 1000
        # Another member of the consumer takes two and does not acknowledge them (yet).
        other = await js.pull_subscribe_bind("campaign-test", stream=stream.stream)
        taken = await other.fetch(2, timeout=5)
        await app.consumer.refresh_info()
        assert metrics.CONSUMER_PENDING.labels(*labels)._value.get() == 3
        assert metrics.CONSUMER_ACK_PENDING.labels(*labels)._value.get() == 2
        for msg in taken:
            await msg.nak()
        handled = 0
        while handled < 5:
            handled += await app.consumer.poll(wait_s=5)

        async def all_acknowledged() -> bool:  # acks are sent without waiting for a reply
            await app.consumer.refresh_info()
            return (
                metrics.CONSUMER_PENDING.labels(*labels)._value.get() == 0
                and metrics.CONSUMER_ACK_PENDING.labels(*labels)._value.get() == 0
            )

        await eventually(all_acknowledged, "every change acknowledged")
    finally:
        await nc.close()


async def test_due_sends_count_what_waits_for_dispatch_and_how_long(
    campaign_app: CampaignApp,
    campaigns,
    webhook: HttpReceiver,
    database_url: str,
    nats_server: NatsForTests,
    stream: ChangeStreamSettings,
    clock: FakeClock,
) -> None:
    hook = campaign(
        channel=types_pb2.CHANNEL_WEBHOOK,
        channel_settings=pb.ChannelSettings(webhook_url=f"{webhook.url}/hooks"),
    )
    await create(campaigns, hook)
    for user in ("ann", "ben"):
        put_profile(database_url, "shop", user)
    await deliver(
        campaign_app,
        nats_server.url,
        stream,
        *(membership("shop", u, "new_users", now_us=clock.now) for u in ("ann", "ben")),
    )
    assert await campaign_app.due_sends.refresh() == {"webhook": (2, pytest.approx(0.0))}
    assert metrics.SENDS_DUE.labels("in_app")._value.get() == 0
    clock.advance(90)  # the dispatcher has not run: both still wait
    assert await campaign_app.due_sends.refresh() == {"webhook": (2, pytest.approx(90.0))}
    assert metrics.SENDS_DUE.labels("webhook")._value.get() == 2
    assert metrics.SENDS_DUE_OLDEST.labels("webhook")._value.get() == pytest.approx(90.0)
    await campaign_app.dispatcher.step()
    assert len(webhook.requests) == 2
    assert await campaign_app.due_sends.refresh() == {}
    assert metrics.SENDS_DUE.labels("webhook")._value.get() == 0
    assert metrics.SENDS_DUE_OLDEST.labels("webhook")._value.get() == 0
