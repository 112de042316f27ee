"""Campaign test helpers: a controllable clock, fakes of our ports, change messages
published exactly as the projector publishes them, profiles, campaign builders."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import grpc
import psycopg
from cohortflow.campaigns.v1 import campaigns_pb2 as pb
from cohortflow.campaigns.v1 import campaigns_pb2_grpc
from cohortflow.changes.v1 import changes_pb2
from cohortflow.types.v1 import types_pb2
from google.protobuf import duration_pb2, timestamp_pb2
from nats.js import JetStreamContext
from psycopg.types.json import Jsonb

from services.campaign.domain.ports import ARCHIVED, LIVE, MISSING
from services.common.jetstream import (
    MSG_ID_HEADER,
    TYPE_HEADER,
    ChangeStreamSettings,
    ChangeSubjects,
)
from services.projector.schema import PROFILES_TABLE

_sequence = itertools.count(1)
LOOPBACK = "127.0.0.0/8,::1/128"


def at_us(text: str) -> int:
    """Microseconds of an ISO time ("2026-03-29T01:30:00+00:00")."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000)


class FakeClock:
    def __init__(self, now_us: int) -> None:
        self.now = now_us

    def now_us(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1_000_000)


class FakeSegmentMembers:
    def __init__(self, members: dict[tuple[str, str], list[str]] | None = None) -> None:
        self.members_of = members or {}
        self.calls: list[tuple[str, str]] = []

    async def members(self, app_id: str, segment_id: str) -> list[str]:
        self.calls.append((app_id, segment_id))
        return list(self.members_of.get((app_id, segment_id), []))


class FakeSegmentDirectory:
    """Segments as the projector would report them: every one exists unless listed."""

    def __init__(self) -> None:
        self.missing: set[str] = set()
        self.archived: set[str] = set()
        self.asked: list[tuple[str, str]] = []

    async def lookup(self, authorization: str, segment_id: str) -> str:
        self.asked.append((authorization, segment_id))
        if segment_id in self.missing:
            return MISSING
        return ARCHIVED if segment_id in self.archived else LIVE


def unique_stream() -> ChangeStreamSettings:
    tag = uuid.uuid4().hex[:10]
    return ChangeStreamSettings(
        CHANGES_STREAM=f"CAMPAIGN_TEST_{tag}", CHANGES_SUBJECT_PREFIX=f"camptest_{tag}.changes"
    )


def _timestamp(value_us: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(
        seconds=value_us // 1_000_000, nanos=(value_us % 1_000_000) * 1000
    )


def _header(
    app_id: str,
    user_id: str,
    change_id: str | None,
    now_us: int,
    *,
    correction: bool = False,
    effective_us: int | None = None,
    **cause: Any,
):
    """A change header made at `now_us` (0: times left unset), effective then unless
    `effective_us` says otherwise."""
    return changes_pb2.ChangeHeader(
        change_id=change_id or f"chg-{uuid.uuid4().hex}",
        app_id=app_id,
        user_id=user_id,
        user_sequence=next(_sequence),
        cause=changes_pb2.Cause(kind=changes_pb2.Cause.KIND_EVENT, **cause),
        effective_time=_timestamp(now_us if effective_us is None else effective_us),
        recorded_time=_timestamp(now_us),
        position=1,
        correction=correction,
    )


def membership(
    app_id: str,
    user_id: str,
    segment_id: str,
    *,
    entered: bool = True,
    change_id: str | None = None,
    now_us: int = 0,
    event_ids: Sequence[str] = (),
    event_name: str = "",
    correction: bool = False,
    effective_us: int | None = None,
) -> changes_pb2.MembershipChanged:
    return changes_pb2.MembershipChanged(
        header=_header(
            app_id,
            user_id,
            change_id,
            now_us,
            correction=correction,
            effective_us=effective_us,
            event_ids=list(event_ids),
            event_name=event_name,
        ),
        segment_id=segment_id,
        segment_version=1,
        direction=changes_pb2.MembershipChanged.DIRECTION_ENTERED
        if entered
        else changes_pb2.MembershipChanged.DIRECTION_EXITED,
    )


def lifecycle(
    app_id: str,
    user_id: str,
    from_state: int,
    to_state: int,
    *,
    change_id: str | None = None,
    now_us: int = 0,
    correction: bool = False,
    effective_us: int | None = None,
) -> changes_pb2.LifecycleChanged:
    return changes_pb2.LifecycleChanged(
        header=_header(
            app_id, user_id, change_id, now_us, correction=correction, effective_us=effective_us
        ),
        from_state=from_state,  # type: ignore[arg-type]
        to_state=to_state,  # type: ignore[arg-type]
    )


def subject_of(stream: ChangeStreamSettings, message: Any) -> str:
    subjects = ChangeSubjects(stream.subject_prefix)
    app_id = message.header.app_id
    if isinstance(message, changes_pb2.MembershipChanged):
        return subjects.segment(app_id, message.segment_id)
    if isinstance(message, changes_pb2.LifecycleChanged):
        return subjects.lifecycle(app_id)
    return subjects.rfm(app_id)


async def publish(js: JetStreamContext, stream: ChangeStreamSettings, message: Any) -> None:
    """Publish a change the way the projector's relay does."""
    await js.publish(
        subject_of(stream, message),
        message.SerializeToString(),
        headers={
            MSG_ID_HEADER: message.header.change_id,
            TYPE_HEADER: message.DESCRIPTOR.full_name,
        },
    )


def put_profile(database_url: str, app_id: str, user_id: str, **fields: Any) -> None:
    """A row of the projector's profiles table (the contract campaign reads)."""
    fields.setdefault("consents", {"email": True, "sms": True, "push": True})
    columns = ["app_id", "user_id", *fields]
    values = [
        app_id,
        user_id,
        *(Jsonb(v) if isinstance(v, dict) else v for v in fields.values()),
    ]
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in fields) or "user_id = EXCLUDED.user_id"
    with psycopg.connect(database_url) as conn:
        conn.execute(
            f"INSERT INTO {PROFILES_TABLE} ({', '.join(columns)})"
            f" VALUES ({', '.join(['%s'] * len(columns))})"
            f" ON CONFLICT (app_id, user_id) DO UPDATE SET {updates}",
            values,
        )


def sent_counts(database_url: str) -> dict[str, int]:
    """channel -> deliveries sent so far (from the campaign's delivery log)."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT channel, count(*) FROM campaign_deliveries WHERE status = 'sent'"
            " GROUP BY channel"
        ).fetchall()
    return {channel: count for channel, count in rows}


def seconds(value: float) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=int(value))


def campaign(
    *,
    name: str = "welcome",
    segment_id: str = "new_users",
    channel: int = types_pb2.CHANNEL_IN_APP,
    body: str = "Hello {{ user.first_name }}",
    title: str = "Hi",
    **fields: Any,
) -> pb.Campaign:
    """An in-app campaign on segment entry, every entry, unless fields say otherwise."""
    fields.setdefault("reentry", pb.ReentryPolicy(mode=pb.ReentryPolicy.MODE_EVERY_TIME))
    fields.setdefault(
        "variants", [pb.Variant(name="A", template=pb.Template(title=title, body=body))]
    )
    fields.setdefault(
        "trigger",
        pb.Trigger(
            segment=pb.SegmentTrigger(
                segment_id=segment_id, direction=pb.SegmentTrigger.DIRECTION_ENTERED
            )
        ),
    )
    return pb.Campaign(name=name, channel=channel, **fields)  # type: ignore[arg-type]


def auth(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


async def define(address: str, *campaigns: pb.Campaign, key: str = "key-shop") -> list[str]:
    """Create campaigns through the public CampaignService API; their ids."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = campaigns_pb2_grpc.CampaignServiceStub(channel)
        return [
            (
                await stub.CreateCampaign(pb.CreateCampaignRequest(campaign=c), metadata=auth(key))
            ).campaign.campaign_id
            for c in campaigns
        ]


def campaign_env(
    database_url: str, nats_url: str, stream: ChangeStreamSettings, **extra: str
) -> tuple[dict[str, str], str]:
    """Environment of a campaign process on free ports; (env, gRPC address)."""
    from services.devstack.embedded import free_port

    port = free_port()
    env = {
        "DATABASE_URL": database_url,
        "NATS_URL": nats_url,
        "COHORTFLOW_API_KEYS": "shop:key-shop",
        "CAMPAIGN_LISTEN": f"127.0.0.1:{port}",
        "CAMPAIGN_METRICS_PORT": str(free_port()),
        "CHANGES_STREAM": stream.stream,
        "CHANGES_SUBJECT_PREFIX": stream.subject_prefix,
        "CAMPAIGN_DISPATCH_POLL_S": "0.2",
        "CAMPAIGN_WEBHOOK_SECRETS": "shop:whsec-shop",
        # The receivers of the tests listen on loopback.
        "CAMPAIGN_WEBHOOK_ALLOWED_NETWORKS": LOOPBACK,
        # No projector unless the test runs one (Pipeline passes its address).
        "CAMPAIGN_SEGMENTS_ADDRESS": "",
        **extra,
    }
    return env, f"127.0.0.1:{port}"
