"""Shared steps of the campaign integration tests."""

from __future__ import annotations

from typing import Any

import nats
import psycopg
from cohortflow.campaigns.v1 import campaigns_pb2 as pb

from services.campaign.bootstrap import CampaignApp
from services.common.jetstream import ChangeStreamSettings
from tests.integration.campaign.conftest import SHOP
from tests.support.campaign import publish


async def create(stub: Any, message: pb.Campaign, metadata=SHOP) -> str:
    reply = await stub.CreateCampaign(pb.CreateCampaignRequest(campaign=message), metadata=metadata)
    return reply.campaign.campaign_id


async def deliver(
    app: CampaignApp, nats_url: str, stream: ChangeStreamSettings, *messages: Any
) -> None:
    """Publish changes as the projector would, then let the consumer decide them all."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        for message in messages:
            await publish(js, stream, message)
    finally:
        await nc.close()
    handled = 0
    while handled < len(messages):
        handled += await app.consumer.poll(wait_s=5)


def deliveries(database_url: str, **where: str) -> list[dict[str, Any]]:
    clause = " AND ".join(f"{k} = %s" for k in where) or "true"
    with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(
            f"SELECT * FROM campaign_deliveries WHERE {clause} ORDER BY decided_at, user_id",
            list(where.values()),
        ).fetchall()
