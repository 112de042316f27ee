"""Shared steps of the campaign integration tests."""

from __future__ import annotations

import uuid
from typing import Any

import nats
import psycopg
from cohortflow.campaigns.v1 import campaigns_pb2 as pb
from cohortflow.segments.v1 import segments_pb2
from cohortflow.types.v1 import types_pb2

from services.campaign.bootstrap import CampaignApp
from services.common.jetstream import ChangeStreamSettings
from services.eventlog.events import EventTracked, event_uuid
from tests.integration.campaign.conftest import SHOP
from tests.support.campaign import campaign, publish

# A segment of every app user who ever completed an order.
BUYERS = segments_pb2.Condition(
    events=segments_pb2.EventCondition(
        name="Order Completed",
        aggregate=segments_pb2.EventCondition.AGGREGATE_COUNT,
        op=">=",
        value=1,
    )
)


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


def tracked_positions(database_url: str) -> dict[str, int]:
    """How far conversions have followed each log (by its name)."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT application_name, max(notification_id)"
            " FROM campaign_conversions_tracking WHERE application_name LIKE %s"
            " GROUP BY application_name",
            ("cohortflow%",),
        )
        return {name: int(n) for name, n in rows}


def purchase(app_id: str, user_id: str, at_us: int, plan: str) -> EventTracked:
    """A tracked purchase of `plan`, as ingest appends it."""
    event_id = f"buy-{uuid.uuid4().hex[:8]}"
    return EventTracked(
        originator_id=event_uuid(app_id, EventTracked.KIND, event_id),
        originator_version=1,
        app_id=app_id,
        event_id=event_id,
        user_id=user_id,
        anonymous_id="",
        name="Purchased",
        event_time_us=at_us,
        received_time_us=at_us,
        properties={"plan": plan},
    )


def winback(**fields: Any) -> pb.Campaign:
    """A win-back campaign: its message goes to users turning dormant."""
    return campaign(
        name="winback",
        trigger=pb.Trigger(
            lifecycle=pb.LifecycleTrigger(to_states=[types_pb2.LIFECYCLE_STATE_DORMANT])
        ),
        **fields,
    )
