"""The campaign service as a process: changes published on JetStream exactly as the
projector publishes them become an in-app message, a webhook and an email; killed with
SIGKILL mid-stream, it loses and doubles nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import nats
import psycopg
import pytest
from cohortflow.campaigns.v1 import campaigns_pb2 as pb
from cohortflow.campaigns.v1 import inbox_pb2, inbox_pb2_grpc
from cohortflow.types.v1 import types_pb2

from tests.support.campaign import (
    auth,
    campaign,
    campaign_env,
    define,
    membership,
    publish,
    put_profile,
    sent_counts,
    unique_stream,
)
from tests.support.processes import ServiceProcess
from tests.support.receivers import HttpReceiver, SmtpReceiver
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e
SHOP = auth("key-shop")


async def test_a_segment_entry_reaches_inbox_webhook_and_email(
    database_url: str,
    nats_server,
    tmp_path: Path,
    webhook: HttpReceiver,
    smtp: SmtpReceiver,
) -> None:
    stream = unique_stream()
    env, address = campaign_env(
        database_url,
        nats_server.url,
        stream,
        CAMPAIGN_SMTP_HOST="127.0.0.1",
        CAMPAIGN_SMTP_PORT=str(smtp.port),
    )
    service = ServiceProcess("services.campaign", env, tmp_path)
    try:
        service.wait_healthy(address)
        await define(
            address,
            campaign(name="inbox", body="Welcome {{ user.first_name }}"),
            campaign(
                name="hook",
                channel=types_pb2.CHANNEL_WEBHOOK,
                channel_settings=pb.ChannelSettings(webhook_url=f"{webhook.url}/in"),
            ),
            campaign(
                name="mail", channel=types_pb2.CHANNEL_EMAIL, title="Hi {{ user.first_name }}"
            ),
        )
        put_profile(
            database_url, "shop", "ana", traits={"first_name": "Ana"}, email="ana@example.com"
        )
        nc = await nats.connect(nats_server.url)
        try:
            await publish(nc.jetstream(), stream, membership("shop", "ana", "new_users"))
        finally:
            await nc.close()

        async with grpc.aio.insecure_channel(address) as channel:
            inbox = inbox_pb2_grpc.InboxServiceStub(channel)

            async def messages():
                reply = await inbox.ListInboxMessages(
                    inbox_pb2.ListInboxMessagesRequest(user_id="ana"), metadata=SHOP
                )
                return list(reply.messages)

            (message,) = await eventually(messages, "the in-app message")
            assert message.body == "Welcome Ana"
            marked = await inbox.MarkRead(
                inbox_pb2.MarkReadRequest(user_id="ana", message_ids=[message.message_id]),
                metadata=SHOP,
            )
            assert marked.marked == 1

        async def arrived():
            return webhook.by_key and smtp.messages

        await eventually(arrived, "the webhook and the email")
        (hook,) = webhook.by_key.values()
        assert hook.path == "/in" and hook.json()["user_id"] == "ana"
        (mail,) = smtp.messages
        assert mail["To"] == "ana@example.com" and mail["Subject"] == "Hi Ana"
    finally:
        assert service.terminate() == 0, service.output()
    assert '"event": "stopped"' in service.output()


async def test_sigkill_mid_stream_loses_nothing_and_doubles_nothing(
    database_url: str, nats_server, tmp_path: Path, webhook: HttpReceiver
) -> None:
    stream = unique_stream()
    # Changes fetched but not acked by the killed process come back after the ack wait,
    # sends it had leased once their lease runs out (both short here, 30 and 60 s by default).
    env, address = campaign_env(
        database_url,
        nats_server.url,
        stream,
        CAMPAIGN_FETCH_BATCH="50",
        CAMPAIGN_ACK_WAIT_S="2",
        CAMPAIGN_LEASE_S="2",
    )
    users = [f"user-{i}" for i in range(1500)]
    first = ServiceProcess("services.campaign", env, tmp_path)
    first.wait_healthy(address)
    in_app, hook = await define(
        address,
        campaign(name="inbox"),
        campaign(
            name="hook",
            channel=types_pb2.CHANNEL_WEBHOOK,
            channel_settings=pb.ChannelSettings(webhook_url=f"{webhook.url}/in"),
        ),
    )
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()

    async def produce() -> None:
        for i, user in enumerate(users):
            await publish(js, stream, membership("shop", user, "new_users", change_id=f"c-{i}"))
            if i % 50 == 49:
                await asyncio.sleep(0.02)  # a steady stream, not one burst

    producer = asyncio.create_task(produce())
    try:
        # Kill -9 once some, not all, messages went out: mid-stream, mid-batch.
        await eventually(
            lambda: asyncio.to_thread(lambda: sent_counts(database_url).get("in_app", 0) >= 200),
            "the first deliveries",
        )
        first.kill()
        killed_at = sent_counts(database_url)
        # The stream keeps flowing while the service is down; then it comes back.
        second = ServiceProcess("services.campaign", env, tmp_path)
        second.wait_healthy(address)
        await producer
        await eventually(
            lambda: asyncio.to_thread(
                lambda: sent_counts(database_url) == {"in_app": len(users), "webhook": len(users)}
            ),
            "every delivery",
            within=120,
        )
        assert second.terminate() == 0, second.output()
    finally:
        producer.cancel()
        await nc.close()
        first.kill()
    assert killed_at.get("in_app", 0) < len(users), "the kill came too late to prove anything"

    with psycopg.connect(database_url) as conn:
        inbox_rows = conn.execute(
            "SELECT user_id, count(*) FROM campaign_inbox GROUP BY user_id"
        ).fetchall()
        hook_ids = {
            row[0]
            for row in conn.execute(
                "SELECT send_id FROM campaign_deliveries WHERE campaign_id = %s", (hook,)
            )
        }
        per_campaign = dict(
            conn.execute(
                "SELECT campaign_id, count(*) FROM campaign_deliveries GROUP BY campaign_id"
            ).fetchall()
        )
    # In-app: exactly one message per triggering change, none lost.
    assert sorted(u for u, _ in inbox_rows) == sorted(users)
    assert {count for _, count in inbox_rows} == {1}
    assert per_campaign == {in_app: len(users), hook: len(users)}
    # Webhook: the receiver saw every send id, each one effect (it honours the key); a
    # call in flight at the kill may be repeated with the same key, never more than once.
    assert set(webhook.by_key) == hook_ids
    repeats = {k: n for k, n in webhook.key_counts.items() if n > 1}
    assert all(n == 2 for n in repeats.values())
    assert (
        len(repeats) <= 32
    )  # at most the provider calls in flight (CAMPAIGN_DISPATCH_CONCURRENCY)
    print(f"sent at kill: {killed_at}; webhook calls repeated with the same key: {len(repeats)}")
