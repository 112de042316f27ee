"""Provider channels against local servers: webhook (signed, retried, dead-lettered), email
over SMTP (aiosmtpd), push (FCM HTTP v1 style) and SMS (Twilio style)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
from urllib.parse import parse_qs

import pytest
from cohortflow.campaigns.v1 import campaigns_pb2 as pb
from cohortflow.types.v1 import types_pb2

from services.campaign.bootstrap import CampaignApp
from tests.integration.campaign.helpers import create, deliver, deliveries
from tests.support.campaign import FakeClock, campaign, membership, put_profile
from tests.support.receivers import HttpReceiver, SmtpReceiver


def webhook_campaign(url: str) -> pb.Campaign:
    return campaign(
        channel=types_pb2.CHANNEL_WEBHOOK,
        channel_settings=pb.ChannelSettings(webhook_url=f"{url}/hooks/cohortflow"),
        body="{{ user.first_name }} joined {{ change.segment_id }}",
    )


async def test_webhook_is_signed_and_carries_the_send_id(
    campaign_app: CampaignApp, campaigns, webhook: HttpReceiver, database_url, nats_server, stream
) -> None:
    campaign_id = await create(campaigns, webhook_campaign(webhook.url))
    put_profile(database_url, "shop", "bob", traits={"first_name": "Bob"})
    await deliver(campaign_app, nats_server.url, stream, membership("shop", "bob", "new_users"))
    await campaign_app.dispatcher.step()
    (request,) = webhook.requests
    (row,) = deliveries(database_url, campaign_id=campaign_id)
    assert row["status"] == "sent"
    assert request.path == "/hooks/cohortflow"
    assert request.headers["Idempotency-Key"] == row["send_id"]
    payload = request.json()
    assert payload["body"] == "Bob joined new_users" and payload["send_id"] == row["send_id"]
    # The receiver can verify the signature with the app's secret.
    fields = dict(
        part.split("=", 1) for part in request.headers["X-Cohortflow-Signature"].split(",")
    )
    expected = hmac.new(
        b"whsec-shop", fields["t"].encode() + b"." + request.body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(fields["v1"], expected)


async def test_webhook_retries_with_backoff_then_succeeds_with_the_same_key(
    campaign_app: CampaignApp, campaigns, database_url, nats_server, stream, clock: FakeClock
) -> None:
    receiver = HttpReceiver(fail_first=2)
    try:
        campaign_id = await create(campaigns, webhook_campaign(receiver.url))
        await deliver(campaign_app, nats_server.url, stream, membership("shop", "cy", "new_users"))
        await campaign_app.dispatcher.step()
        (row,) = deliveries(database_url, campaign_id=campaign_id)
        assert (row["status"], row["reason"], row["attempts"]) == ("pending", "retrying", 1)
        assert row["last_error"].startswith("HTTP 503")
        # Not due again until the backoff has passed.
        await campaign_app.dispatcher.step()
        assert len(receiver.requests) == 1
        for _ in range(2):
            clock.advance(600)
            await campaign_app.dispatcher.step()
        (row,) = deliveries(database_url, campaign_id=campaign_id)
        assert (row["status"], row["attempts"]) == ("sent", 3)
        assert {r.headers["Idempotency-Key"] for r in receiver.requests} == {row["send_id"]}
        assert receiver.key_counts[row["send_id"]] == 1
    finally:
        receiver.close()


async def test_webhook_dead_letters_after_max_attempts_and_4xx_is_final(
    campaign_app: CampaignApp, campaigns, database_url, nats_server, stream, clock: FakeClock
) -> None:
    down, refusing = HttpReceiver(fail_first=100), HttpReceiver(status=410)
    try:
        dead_id = await create(campaigns, webhook_campaign(down.url))
        gone_id = await create(campaigns, webhook_campaign(refusing.url))
        await deliver(campaign_app, nats_server.url, stream, membership("shop", "di", "new_users"))
        for _ in range(4):  # CAMPAIGN_MAX_ATTEMPTS=3 in these tests
            await campaign_app.dispatcher.step()
            clock.advance(600)
        (dead,) = deliveries(database_url, campaign_id=dead_id)
        assert (dead["status"], dead["reason"], dead["attempts"]) == ("failed", "dead_letter", 3)
        assert len(down.requests) == 3
        (gone,) = deliveries(database_url, campaign_id=gone_id)
        assert (gone["status"], gone["reason"], gone["attempts"]) == ("failed", "rejected", 1)
    finally:
        down.close()
        refusing.close()


@pytest.fixture
def providers(smtp: SmtpReceiver):
    push, sms = (
        HttpReceiver(reply={"name": "projects/cf/messages/42"}),
        HttpReceiver(status=201, reply={"sid": "SM123"}),
    )
    yield (
        {
            "CAMPAIGN_SMTP_HOST": "127.0.0.1",
            "CAMPAIGN_SMTP_PORT": smtp.port,
            "CAMPAIGN_SMTP_FROM": "news@shop.example",
            "CAMPAIGN_PUSH_BASE_URL": push.url,
            "CAMPAIGN_PUSH_PROJECT": "cf",
            "CAMPAIGN_PUSH_TOKEN": "push-token",
            "CAMPAIGN_SMS_BASE_URL": sms.url,
            "CAMPAIGN_SMS_ACCOUNT_SID": "AC1",
            "CAMPAIGN_SMS_AUTH_TOKEN": "sms-token",
            "CAMPAIGN_SMS_FROM": "+4930000",
        },
        push,
        sms,
    )
    push.close()
    sms.close()


@pytest.fixture
async def provider_app(start_app, providers) -> CampaignApp:
    return await start_app(**providers[0])


async def test_email_push_and_sms_reach_their_providers_with_the_send_id(
    provider_app: CampaignApp, providers, smtp: SmtpReceiver, database_url, nats_server, stream
) -> None:
    import grpc
    from cohortflow.campaigns.v1 import campaigns_pb2_grpc

    _, push, sms = providers
    put_profile(
        database_url,
        "shop",
        "eve",
        traits={"first_name": "Eve"},
        email="eve@example.com",
        phone="+491701234567",
        push_token="tok-eve",
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{provider_app.port}") as ch:
        stub = campaigns_pb2_grpc.CampaignServiceStub(ch)
        ids = {
            channel: await create(
                stub,
                campaign(name=name, channel=channel, title="Hello {{ user.first_name }}"),
            )
            for name, channel in (
                ("email", types_pb2.CHANNEL_EMAIL),
                ("push", types_pb2.CHANNEL_PUSH),
                ("sms", types_pb2.CHANNEL_SMS),
            )
        }
    await deliver(provider_app, nats_server.url, stream, membership("shop", "eve", "new_users"))
    await provider_app.dispatcher.step()
    rows = {r["channel"]: r for r in deliveries(database_url)}
    assert {c: r["status"] for c, r in rows.items()} == {
        "email": "sent",
        "push": "sent",
        "sms": "sent",
    }
    assert {r["campaign_id"] for r in rows.values()} == set(ids.values())

    (mail,) = smtp.messages
    assert mail["To"] == "eve@example.com" and mail["From"] == "news@shop.example"
    assert mail["Subject"] == "Hello Eve"
    assert mail["Message-ID"] == f"<{rows['email']['send_id']}@cohortflow>"
    assert mail.get_payload().strip() == "Hello Eve"

    (call,) = push.requests
    assert call.path == "/v1/projects/cf/messages:send"
    assert call.headers["Authorization"] == "Bearer push-token"
    assert call.headers["Idempotency-Key"] == rows["push"]["send_id"]
    assert call.json()["message"]["token"] == "tok-eve"
    assert rows["push"]["provider_id"] == "projects/cf/messages/42"

    (call,) = sms.requests
    assert call.path == "/2010-04-01/Accounts/AC1/Messages.json"
    assert call.headers["I-Twilio-Idempotency-Token"] == rows["sms"]["send_id"]
    form = parse_qs(call.body.decode())
    assert form == {"To": ["+491701234567"], "From": ["+4930000"], "Body": ["Hello Eve"]}
    assert rows["sms"]["provider_id"] == "SM123"


@pytest.mark.parametrize("campaign_app", [{"CAMPAIGN_DISPATCH_CONCURRENCY": 4}], indirect=True)
async def test_a_crash_mid_round_repeats_at_most_the_calls_in_flight(
    campaign_app: CampaignApp, campaigns, webhook: HttpReceiver, database_url, nats_server, stream
) -> None:
    """Each outcome is recorded before its slot takes another call: killed mid-round, the
    service leaves unrecorded (to be repeated after the lease) only the calls in flight,
    not every call of the round that already reached the provider."""
    campaign_id = await create(campaigns, webhook_campaign(webhook.url))
    users = [f"u{i}" for i in range(200)]
    await deliver(
        campaign_app,
        nats_server.url,
        stream,
        *(membership("shop", user, "new_users") for user in users),
    )
    round_ = asyncio.create_task(campaign_app.dispatcher.step())
    while len(webhook.requests) < 60 and not round_.done():  # noqa: ASYNC110 - a thread
        await asyncio.sleep(0.001)
    round_.cancel()  # the process dies here
    with contextlib.suppress(asyncio.CancelledError):
        await round_
    status = {r["send_id"]: r["status"] for r in deliveries(database_url, campaign_id=campaign_id)}
    reached = set(webhook.by_key)
    assert len(reached) >= 60
    unrecorded = [key for key in reached if status[key] != "sent"]
    assert len(unrecorded) <= 4, f"{len(unrecorded)} calls that reached the provider unrecorded"
