"""What a client sees when a definition is refused: INVALID_ARGUMENT naming the field
(UNAVAILABLE when segments cannot be checked), never INTERNAL or UNKNOWN, nothing stored;
and a webhook whose host is not public is not called, even when stored before."""

from __future__ import annotations

import grpc
import httpx
import pytest
from cohortflow.campaigns.v1 import campaigns_pb2 as pb
from cohortflow.campaigns.v1 import campaigns_pb2_grpc
from cohortflow.types.v1 import types_pb2
from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.campaign.adapters.channels import WebhookSender
from services.campaign.domain.addresses import parse_networks
from services.campaign.domain.ports import Outgoing, SegmentsUnavailable
from services.common.grpc.errors import bad_request_of
from tests.integration.campaign.conftest import SHOP, AppFactory
from tests.integration.campaign.helpers import create, deliver, deliveries
from tests.support.campaign import LOOPBACK, FakeSegmentDirectory, campaign, membership
from tests.support.receivers import HttpReceiver

YEARS_10K = duration_pb2.Duration(seconds=10_000 * 365 * 86_400)


def hook(url: str) -> pb.Campaign:
    return campaign(
        channel=types_pb2.CHANNEL_WEBHOOK, channel_settings=pb.ChannelSettings(webhook_url=url)
    )


def broadcast(**schedule) -> pb.Campaign:
    return campaign(trigger=pb.Trigger(broadcast=pb.BroadcastTrigger(segment_id="all", **schedule)))


def template(**parts) -> pb.Campaign:
    return campaign(variants=[pb.Variant(name="A", template=pb.Template(**parts))])


REFUSED = [
    (hook("http://169.254.169.254/latest/meta-data/"), "campaign.channel_settings.webhook_url"),
    (hook("http://[fe80::1]/hook"), "campaign.channel_settings.webhook_url"),
    (hook("http://10.0.0.5/hook"), "campaign.channel_settings.webhook_url"),
    (hook("http://hooks.example.com/\r\nX-Evil: 1"), "campaign.channel_settings.webhook_url"),
    (
        campaign(
            channel=types_pb2.CHANNEL_EMAIL,
            channel_settings=pb.ChannelSettings(email_from="a@example.com\r\nBcc: all@example.com"),
        ),
        "campaign.channel_settings.email_from",
    ),
    (
        broadcast(send_time=timestamp_pb2.Timestamp(seconds=-62135596800)),
        "campaign.trigger.broadcast.send_time",
    ),
    (
        broadcast(send_time=timestamp_pb2.Timestamp(seconds=253402214400)),
        "campaign.trigger.broadcast.send_time",
    ),
    (broadcast(cron="0 0 30 2 *"), "campaign.trigger.broadcast.cron"),
    (campaign(delay=YEARS_10K), "campaign.delay"),
    (campaign(max_trigger_age=YEARS_10K), "campaign.max_trigger_age"),
    (campaign(name="Sale \x1b[31mnow\x1b[0m"), "campaign.name"),
    (campaign(name="Sale\x00"), "campaign.name"),
    (campaign(name="x" * 1_000_000), "campaign.name"),
    (template(body="x" * 1_000_000), "campaign.variants[0].template.body"),
    (
        template(body="{{" + "(" * 5000 + "1" + ")" * 5000 + "}}"),
        "campaign.variants[0].template.body",
    ),
    (template(body="hi", title="\x1b]0;owned\x07"), "campaign.variants[0].template.title"),
]


async def test_a_refused_definition_names_its_field_and_stores_nothing(campaigns) -> None:
    seen = []
    for message, field in REFUSED:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await campaigns.CreateCampaign(
                pb.CreateCampaignRequest(campaign=message), metadata=SHOP
            )
        named = [f for f, _ in bad_request_of(caught.value)]
        seen.append((field, caught.value.code(), field in named))
    assert seen == [(field, grpc.StatusCode.INVALID_ARGUMENT, True) for _, field in REFUSED]
    listed = await campaigns.ListCampaigns(pb.ListCampaignsRequest(), metadata=SHOP)
    assert list(listed.campaigns) == []


async def test_templates_that_would_take_all_memory_are_accepted_without_running(campaigns) -> None:
    for body in ("{{ 'x' * 10**9 }}", "{{ 9 ** (9 ** 7) }}"):
        created = await create(campaigns, template(body=body))
        assert created


async def test_loopback_webhooks_need_the_operator_setting(start_app: AppFactory) -> None:
    strict = await start_app(CAMPAIGN_WEBHOOK_ALLOWED_NETWORKS="")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{strict.port}") as channel:
        stub = campaigns_pb2_grpc.CampaignServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await create(stub, hook("http://127.0.0.1:8080/hook"))
        assert "not a public address" in bad_request_of(caught.value)[0][1]


async def test_a_stored_webhook_to_a_refused_address_is_not_called(
    start_app: AppFactory, webhook: HttpReceiver, database_url, nats_server, stream
) -> None:
    # Defined while loopback was allowed; the operator has since removed the setting.
    allowed = await start_app(CAMPAIGN_DB_POOL_SIZE=2)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{allowed.port}") as channel:
        campaign_id = await create(
            campaigns_pb2_grpc.CampaignServiceStub(channel), hook(f"{webhook.url}/hooks")
        )
    strict = await start_app(CAMPAIGN_WEBHOOK_ALLOWED_NETWORKS="", CAMPAIGN_DB_POOL_SIZE=2)
    await deliver(strict, nats_server.url, stream, membership("shop", "u1", "new_users"))
    await strict.dispatcher.step()
    (row,) = deliveries(database_url, campaign_id=campaign_id)
    assert (row["status"], row["reason"]) == ("failed", "webhook_address_refused")
    assert "not a public address" in row["last_error"] and webhook.requests == []


async def test_campaigns_on_missing_or_archived_segments_are_refused(
    campaigns, directory: FakeSegmentDirectory
) -> None:
    directory.missing.add("ghosts")
    directory.archived.add("old")
    cases = [
        (campaign(segment_id="ghosts"), "campaign.trigger.segment.segment_id", "does not exist"),
        (campaign(segment_id="old"), "campaign.trigger.segment.segment_id", "archived"),
        (
            campaign(
                trigger=pb.Trigger(
                    broadcast=pb.BroadcastTrigger(segment_id="ghosts", cron="0 9 * * *")
                )
            ),
            "campaign.trigger.broadcast.segment_id",
            "does not exist",
        ),
    ]
    for message, field, problem in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await create(campaigns, message)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        ((named, description),) = bad_request_of(caught.value)
        assert named == field and problem in description
    # The lookup carried the caller's own key.
    assert {auth for auth, _ in directory.asked} == {"Bearer key-shop"}


async def test_an_update_asks_about_the_segment_only_when_it_changes(
    campaigns, directory: FakeSegmentDirectory
) -> None:
    campaign_id = await create(campaigns, campaign(segment_id="buyers"))
    directory.archived.add("buyers")  # archived since: renaming the campaign still works
    asked = len(directory.asked)
    renamed = pb.Campaign(campaign_id=campaign_id, name="renamed")
    mask = field_mask_pb2.FieldMask(paths=["name"])
    await campaigns.UpdateCampaign(
        pb.UpdateCampaignRequest(campaign=renamed, update_mask=mask), metadata=SHOP
    )
    assert len(directory.asked) == asked
    directory.missing.add("ghosts")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await campaigns.UpdateCampaign(
            pb.UpdateCampaignRequest(
                campaign=pb.Campaign(
                    campaign_id=campaign_id,
                    trigger=pb.Trigger(segment=pb.SegmentTrigger(segment_id="ghosts")),
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["trigger"]),
            ),
            metadata=SHOP,
        )
    assert bad_request_of(caught.value)[0][0] == "campaign.trigger.segment.segment_id"
    current = await campaigns.GetCampaign(
        pb.GetCampaignRequest(campaign_id=campaign_id), metadata=SHOP
    )
    assert (current.campaign.version, current.campaign.name) == (2, "renamed")


class DownDirectory:
    async def lookup(self, authorization: str, segment_id: str) -> str:
        raise SegmentsUnavailable("the projector's SegmentService did not answer")


async def test_segments_that_cannot_be_checked_make_the_create_unavailable(
    start_app: AppFactory,
) -> None:
    app = await start_app(segments=DownDirectory())
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stub = campaigns_pb2_grpc.CampaignServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await create(stub, campaign())
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "campaign.trigger.segment.segment_id" in (caught.value.details() or "")
        listed = await stub.ListCampaigns(pb.ListCampaignsRequest(), metadata=SHOP)
        assert list(listed.campaigns) == []


TEXT = st.text(st.characters(codec="utf-8"), max_size=200)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=TEXT,
    body=TEXT,
    url=TEXT,
    cron=TEXT,
    zone=TEXT,
    delay=st.integers(-(10**12), 10**12),
    send_time=st.integers(-62135596800, 253402300799),
)
async def test_random_definitions_are_accepted_or_refused_never_an_internal_error(
    campaigns, name, body, url, cron, zone, delay, send_time
) -> None:
    messages = [
        campaign(name=name, body=body, delay=duration_pb2.Duration(seconds=delay)),
        hook(url),
        broadcast(cron=cron, timezone=zone),
        broadcast(send_time=timestamp_pb2.Timestamp(seconds=send_time)),
    ]
    refusals = []
    for message in messages:
        try:
            await campaigns.CreateCampaign(
                pb.CreateCampaignRequest(campaign=message), metadata=SHOP
            )
        except grpc.aio.AioRpcError as error:
            refusals.append((error.code(), bool(bad_request_of(error)), error.details()))
    for code, named, details in refusals:
        assert (code, named) == (grpc.StatusCode.INVALID_ARGUMENT, True), details


async def test_an_update_is_refused_the_same_way_and_leaves_the_version(campaigns) -> None:
    campaign_id = await create(campaigns, campaign())
    seen = []
    for message, field in REFUSED:
        update = pb.Campaign()
        update.CopyFrom(message)
        update.campaign_id = campaign_id
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await campaigns.UpdateCampaign(pb.UpdateCampaignRequest(campaign=update), metadata=SHOP)
        named = [f for f, _ in bad_request_of(caught.value)]
        seen.append((field, caught.value.code(), field in named))
    assert seen == [(field, grpc.StatusCode.INVALID_ARGUMENT, True) for _, field in REFUSED]
    current = await campaigns.GetCampaign(
        pb.GetCampaignRequest(campaign_id=campaign_id), metadata=SHOP
    )
    assert current.campaign.version == 1


async def test_the_webhook_sender_resolves_names_and_calls_only_allowed_addresses(
    webhook: HttpReceiver,
) -> None:
    port = webhook.url.rsplit(":", 1)[1]
    message = Outgoing(
        send_id="s1",
        app_id="shop",
        campaign_id="c1",
        user_id="u1",
        channel="webhook",
        address=f"http://localhost:{port}/hooks",  # a name: resolved when sending
        title="",
        body="hi",
        data={},
        variant="A",
        change_id="chg-1",
    )
    async with httpx.AsyncClient(timeout=5) as client:
        refused = await WebhookSender(client, {}).send(message)
        allowed = await WebhookSender(client, {}, allowed=parse_networks(LOOPBACK)).send(message)
    assert (refused.ok, refused.retryable, refused.reason) == (
        False,
        False,
        "webhook_address_refused",
    )
    assert "localhost is 127.0.0.1, not a public address" in refused.error
    assert allowed.ok and [r.path for r in webhook.requests] == ["/hooks"]
