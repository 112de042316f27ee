"""Change on JetStream -> decision -> in-app inbox, over real NATS, PostgreSQL and gRPC."""

from __future__ import annotations

import nats
from cohortflow.campaigns.v1 import campaigns_pb2 as pb
from cohortflow.campaigns.v1 import inbox_pb2

from services.campaign.bootstrap import CampaignApp
from services.common.jetstream import ChangeStreamSettings
from tests.integration.campaign.conftest import SHOP
from tests.support.campaign import FakeClock, campaign, membership, publish, put_profile
from tests.support.infra import NatsForTests


async def test_segment_entry_puts_a_personalised_message_in_the_inbox_as_it_is_decided(
    campaign_app: CampaignApp,
    campaigns,
    inbox,
    database_url: str,
    nats_server: NatsForTests,
    stream: ChangeStreamSettings,
    clock: FakeClock,
) -> None:
    created = await campaigns.CreateCampaign(
        pb.CreateCampaignRequest(campaign=campaign(body="Welcome, {{ user.first_name }}!")),
        metadata=SHOP,
    )
    put_profile(database_url, "shop", "alice", traits={"first_name": "Alice"})
    nc = await nats.connect(nats_server.url)
    try:
        await publish(
            nc.jetstream(), stream, membership("shop", "alice", "new_users", now_us=clock.now)
        )
    finally:
        await nc.close()
    # Decided and acked is enough: an in-app send due at once needs no dispatch round.
    assert await campaign_app.consumer.poll(wait_s=5) == 1
    reply = await inbox.ListInboxMessages(
        inbox_pb2.ListInboxMessagesRequest(user_id="alice"), metadata=SHOP
    )
    (message,) = reply.messages
    assert message.body == "Welcome, Alice!"
    assert message.campaign_id == created.campaign.campaign_id
    assert reply.unread_count == 1
