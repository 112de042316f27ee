"""The JetStream consumer on a real server: poison is recorded and terminated, transient
failures are nak'ed and come back, nothing is acked before its decision is recorded."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import nats
import psycopg
import pytest
from nats.js.api import ConsumerInfo

from services.campaign.adapters.consumer import ChangeConsumer
from services.campaign.bootstrap import CampaignApp
from services.campaign.domain.changes import Change
from services.common.jetstream import ChangeStreamSettings, ChangeSubjects
from tests.integration.campaign.helpers import create, deliver, deliveries
from tests.support.campaign import campaign, membership, publish


async def consumer_info(nats_url: str, stream: ChangeStreamSettings, durable: str) -> ConsumerInfo:
    nc = await nats.connect(nats_url)
    try:
        return await nc.jetstream().consumer_info(stream.stream, durable)
    finally:
        await nc.close()


async def test_poison_messages_are_recorded_and_terminated(
    campaign_app: CampaignApp, campaigns, database_url, nats_server, stream
) -> None:
    await create(campaigns, campaign())
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        subject = ChangeSubjects(stream.subject_prefix).segment("shop", "new_users")
        await js.publish(subject, b"\x08\x96", headers={"Cohortflow-Type": "no.such.Type"})
        await js.publish(
            subject,
            b"\xff\xff garbage",
            headers={"Cohortflow-Type": "cohortflow.changes.v1.MembershipChanged"},
        )
        await publish(js, stream, membership("shop", "u1", "new_users"))
    finally:
        await nc.close()
    handled = 0
    while handled < 3:
        handled += await campaign_app.consumer.poll(wait_s=5)
    with psycopg.connect(database_url) as conn:
        reasons = [
            r[0]
            for r in conn.execute(
                "SELECT reason FROM campaign_poison_messages ORDER BY stream_sequence"
            )
        ]
    assert reasons[0] == "unknown Cohortflow-Type 'no.such.Type'"
    assert reasons[1].startswith("cannot decode")
    assert [r["user_id"] for r in deliveries(database_url)] == ["u1"]
    info = await consumer_info(nats_server.url, stream, "campaign-test")
    assert info.num_ack_pending == 0 and info.num_redelivered == 0


class Flaky:
    """Our decider port failing like a database that is down, then recovering."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.seen: list[list[str]] = []

    async def __call__(self, changes: Sequence[Change]) -> object:
        self.seen.append([c.change_id for c in changes])
        if self.failures:
            self.failures -= 1
            raise self.error
        return None


async def _consumer(nats_url, stream, process, durable) -> tuple[ChangeConsumer, object]:
    nc = await nats.connect(nats_url)
    consumer = ChangeConsumer(
        nc, stream, durable, process, _no_poison, batch=10, nak_base_s=0.05, nak_max_s=0.2
    )
    await consumer.start()
    return consumer, nc


async def _no_poison(msg: object, reason: str) -> None:
    raise AssertionError(reason)


async def test_transient_failures_nak_and_the_change_comes_back(
    nats_server, stream: ChangeStreamSettings
) -> None:
    flaky = Flaky(2, psycopg.OperationalError("server closed the connection"))
    consumer, nc = await _consumer(nats_server.url, stream, flaky, "flaky")
    try:
        await publish(nc.jetstream(), stream, membership("shop", "u1", "s", change_id="chg-x"))
        while len(flaky.seen) < 3:
            await consumer.poll(wait_s=2)
        assert flaky.seen == [["chg-x"]] * 3
        await nc.flush()
        info = await consumer_info(nats_server.url, stream, "flaky")
        # Delivered three times (two naks), then acked.
        assert info.delivered.consumer_seq == 3
        assert info.num_ack_pending == 0 and info.ack_floor.stream_seq == 1
    finally:
        await consumer.close()
        await nc.close()


async def test_a_change_that_always_breaks_processing_is_isolated_and_terminated(
    nats_server, stream: ChangeStreamSettings
) -> None:
    class Breaks:
        def __init__(self) -> None:
            self.done: list[str] = []

        async def __call__(self, changes: Sequence[Change]) -> object:
            if any(c.user_id == "bad" for c in changes):
                raise ValueError("a bug that retrying cannot fix")
            self.done += [c.user_id for c in changes]
            return None

    process = Breaks()
    poisoned: list[str] = []

    async def record(msg: object, reason: str) -> None:
        poisoned.append(reason)

    nc = await nats.connect(nats_server.url)
    consumer = ChangeConsumer(nc, stream, "isolating", process, record, batch=10)
    await consumer.start()
    try:
        js = nc.jetstream()
        for user in ("a", "bad", "b"):
            await publish(js, stream, membership("shop", user, "s"))
        handled = 0
        while handled < 3:
            handled += await consumer.poll(wait_s=2)
        assert process.done == ["a", "b"]
        assert poisoned == ["processing failed: ValueError('a bug that retrying cannot fix')"]
        await asyncio.sleep(0)  # acks and term are fire-and-forget publishes
        await nc.flush()
        info = await consumer_info(nats_server.url, stream, "isolating")
        assert info.num_ack_pending == 0
    finally:
        await consumer.close()
        await nc.close()


@pytest.mark.parametrize("campaign_app", [{"CAMPAIGN_CONSUMER": "durable-restart"}], indirect=True)
async def test_the_durable_consumer_resumes_where_it_left_off(
    campaign_app: CampaignApp, campaigns, database_url, nats_server, stream
) -> None:
    await create(campaigns, campaign())
    nc = await nats.connect(nats_server.url)
    try:
        for user in ("u1", "u2"):
            await publish(nc.jetstream(), stream, membership("shop", user, "new_users"))
    finally:
        await nc.close()
    assert await campaign_app.consumer.poll(wait_s=5) == 2
    info = await consumer_info(nats_server.url, stream, "durable-restart")
    assert info.num_pending == 0 and info.num_ack_pending == 0
    assert len(deliveries(database_url)) == 2


async def test_change_ids_are_forgotten_once_the_stream_cannot_redeliver_them(
    campaign_app: CampaignApp, campaigns, database_url, nats_server, stream, clock
) -> None:
    await create(campaigns, campaign())
    await deliver(campaign_app, nats_server.url, stream, membership("shop", "u1", "new_users"))
    assert await campaign_app.housekeeper.prune() == 0
    clock.advance((stream.max_age_days + 8) * 86_400)
    assert await campaign_app.housekeeper.prune() == 1
