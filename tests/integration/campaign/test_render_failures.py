"""A template that fails to render fails its own send only: other campaigns on the same
change get every delivery, nothing is poison, and a slow render holds up no other change."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc
import psycopg
import pytest
from cohortflow.campaigns.v1 import campaigns_pb2 as pb
from cohortflow.campaigns.v1 import campaigns_pb2_grpc, inbox_pb2

from services.campaign.adapters.change_messages import decode_change
from services.campaign.adapters.rendering import RenderLimits, RenderPool
from services.campaign.bootstrap import CampaignApp
from services.campaign.domain.changes import Change
from services.campaign.domain.ports import Renderer, RenderJob
from services.campaign.domain.templates import Rendered, Unrendered
from tests.integration.campaign.conftest import SHOP, AppFactory
from tests.integration.campaign.helpers import create, deliver, deliveries
from tests.support.campaign import campaign, membership

BROKEN = {
    "division": ("{{ 1/0 }}", "render_error", "ZeroDivisionError"),
    "range": ("{{ range(10**9)|list }}", "render_error", "MAX_RANGE"),
    "escape": ("{{ cycler.__init__.__globals__.os }}", "render_error", "unsafe"),
    "power": ("{{ 9 ** (9 ** 7) }}", "render_too_large", "bits"),
    "repeat": ("{{ 'x' * 10**9 }}", "render_too_large", "repetition"),
    "ten-mb": (
        "{% for i in range(100000) %}{{ 'y' * 100 }}{% endfor %}",
        "render_too_large",
        "over 100,000 characters",
    ),
}
USERS = ("ana", "ben", "cleo")


async def test_a_failing_template_fails_its_own_sends_and_no_other(
    campaign_app: CampaignApp, campaigns, inbox, database_url, nats_server, stream, clock
) -> None:
    good = await create(campaigns, campaign(name="good", body="Welcome {{ user.user_id }}"))
    broken = {}
    for name, (body, _, _) in BROKEN.items():
        # Each is accepted: nothing of a template is evaluated when it is defined.
        strict = pb.Template.MISSING_VARIABLES_SUPPRESS if name == "escape" else 0
        template = pb.Template(body=body, missing_variables=strict)  # type: ignore[arg-type]
        broken[name] = await create(
            campaigns, campaign(name=name, variants=[pb.Variant(name="A", template=template)])
        )
    await deliver(
        campaign_app,
        nats_server.url,
        stream,
        *(membership("shop", u, "new_users", now_us=clock.now) for u in USERS),
    )
    await campaign_app.dispatcher.step()

    assert {r["user_id"]: r["status"] for r in deliveries(database_url, campaign_id=good)} == {
        u: "sent" for u in USERS
    }
    for user in USERS:
        reply = await inbox.ListInboxMessages(
            inbox_pb2.ListInboxMessagesRequest(user_id=user), metadata=SHOP
        )
        assert [m.body for m in reply.messages] == [f"Welcome {user}"]
        listed = await campaigns.ListDeliveries(
            pb.ListDeliveriesRequest(user_id=user), metadata=SHOP
        )
        failed = {d.campaign_id: d for d in listed.deliveries if d.campaign_id != good}
        for name, (_, reason, error) in BROKEN.items():
            delivery = failed[broken[name]]
            assert (delivery.status, delivery.reason) == (pb.Delivery.STATUS_FAILED, reason)
            assert error in delivery.last_error
    with psycopg.connect(database_url) as conn:
        poison = conn.execute("SELECT count(*) FROM campaign_poison_messages").fetchone()
        biggest = conn.execute("SELECT max(length(body)) FROM campaign_inbox").fetchone()
    assert poison == (0,) and biggest is not None and biggest[0] < 100


@pytest.mark.parametrize("campaign_app", [{"CAMPAIGN_RENDER_TIMEOUT_S": 0.3}], indirect=True)
async def test_a_render_over_the_time_limit_fails_once_and_then_at_once(
    campaign_app: CampaignApp, campaigns, database_url, nats_server, stream, clock
) -> None:
    spin = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
    slow = await create(campaigns, campaign(name="slow", body=spin))
    good = await create(campaigns, campaign(name="good", body="Hi"))
    for user in USERS:
        await deliver(campaign_app, nats_server.url, stream, membership("shop", user, "new_users"))
    rows = deliveries(database_url, campaign_id=slow)
    assert {(r["status"], r["reason"]) for r in rows} == {("failed", "render_timeout")}
    # Tripped after the first: the later ones did not cost the limit again.
    assert sum("not tried again" in r["last_error"] for r in rows) == len(USERS) - 1
    assert {r["status"] for r in deliveries(database_url, campaign_id=good)} == {"sent"}


class GatedRenderer:
    """Holds renders of one campaign until released; the real renderer does the rest."""

    def __init__(self, inner: Renderer) -> None:
        self.inner = inner
        self.held = "(none yet)"
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def render(self, jobs: Sequence[RenderJob]) -> list[Rendered | Unrendered]:
        if any(job.key.startswith(self.held) for job in jobs):
            self.entered.set()
            await self.release.wait()
        return await self.inner.render(jobs)


def change(user: str, segment: str, now_us: int) -> Change:
    message = membership("shop", user, segment, now_us=now_us)
    return decode_change(
        {"Cohortflow-Type": message.DESCRIPTOR.full_name}, message.SerializeToString()
    )


async def test_another_change_is_decided_while_a_render_is_under_way(
    start_app: AppFactory, database_url, clock
) -> None:
    pool = RenderPool(RenderLimits())
    gate = GatedRenderer(pool)
    app = await start_app(renderer=gate)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            stub = campaigns_pb2_grpc.CampaignServiceStub(channel)
            slow = await create(stub, campaign(name="slow", segment_id="slow_segment"))
            fast = await create(stub, campaign(name="fast", segment_id="fast_segment"))
        gate.held = slow
        held = asyncio.ensure_future(app.decider.process([change("u1", "slow_segment", clock.now)]))
        await gate.entered.wait()
        # While that batch waits for its render, another is decided and delivered.
        outcome = await app.decider.process([change("u2", "fast_segment", clock.now)])
        assert (outcome.decided, outcome.delivered) == (1, 1) and not held.done()
        assert [r["status"] for r in deliveries(database_url, campaign_id=fast)] == ["sent"]
        gate.release.set()
        assert (await held).delivered == 1
        assert [r["status"] for r in deliveries(database_url, campaign_id=slow)] == ["sent"]
    finally:
        await pool.close()
