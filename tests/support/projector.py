"""A projector in this process for integration tests, and what to check it against."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import psycopg
from cohortflow.profiles.v1.profiles_pb2_grpc import ProfileServiceStub
from cohortflow.segments.v1.segments_pb2_grpc import SegmentServiceStub
from eventsourcing.persistence import StoredEvent
from grpc_health.v1 import health_pb2, health_pb2_grpc
from psycopg import sql

from services.common.grpc.auth import ApiKeys
from services.common.jetstream import ChangeStreamSettings
from services.eventlog.store import EventLog, open_event_log
from services.projector.bootstrap import ProjectorApp, start_projector
from services.projector.config import Policies, ProjectorSettings
from services.projector.domain.engine import Engine
from tests.support.changes import delete_stream, unique_streams

# Two apps and their keys: what one app may do, the other may not see.
KEYS = ApiKeys([("app", "key-app"), ("other", "key-other")])


def projector_settings(database_url: str, nats_url: str, **overrides: Any) -> ProjectorSettings:
    values: dict[str, Any] = {
        "DATABASE_URL": database_url,
        "NATS_URL": nats_url,
        "PROJECTOR_LISTEN": "127.0.0.1:0",
        "PROJECTOR_TICK_INTERVAL_S": 0,
        "PROJECTOR_WATCHDOG_S": 0.2,
        "PROJECTOR_METRICS_PORT": 0,
        **overrides,
    }
    return ProjectorSettings(**values)


@dataclass
class InProcessProjector:
    """A projector started in this test's process: the running app, the log it follows (a
    connection of the test's own), a channel to its gRPC services, and its change stream."""

    app: ProjectorApp
    log: EventLog
    channel: grpc.aio.Channel
    streams: ChangeStreamSettings
    nats_url: str
    database_url: str

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.app.port}"

    @property
    def segments(self) -> SegmentServiceStub:
        return SegmentServiceStub(self.channel)

    @property
    def profiles(self) -> ProfileServiceStub:
        return ProfileServiceStub(self.channel)


@contextlib.asynccontextmanager
async def in_process_projector(
    database_url: str,
    nats_url: str,
    keys: ApiKeys = KEYS,
    *,
    streams: ChangeStreamSettings | None = None,
    **settings: Any,
) -> AsyncIterator[InProcessProjector]:
    """Start a projector on `database_url` publishing to streams of its own on `nats_url`
    (or to `streams`, shared with another: then the caller deletes them); `settings`
    override `projector_settings`. Stop it and delete its streams after."""
    own = streams is None
    streams = streams or unique_streams()
    app = await start_projector(
        projector_settings(database_url, nats_url, **settings), keys, streams=streams
    )
    running: InProcessProjector | None = None
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            running = InProcessProjector(
                app, open_event_log(database_url), channel, streams, nats_url, database_url
            )
            yield running
    finally:
        await app.stop(1)
        if running is not None:
            running.log.close()  # the test's log of the moment (it may have opened another)
        if own:
            await delete_stream(nats_url, streams)


def append(log: EventLog, *events: object) -> list[int]:
    """Store `events` in one transaction; their positions, in order."""
    stored = [log.encode(e) for e in events]
    outcome = log.append_new(stored)
    return [outcome.position(s.originator_id)[0] for s in stored]


def append_raw(log: EventLog, topic: str, state: bytes) -> int:
    """Store a row as an old or foreign writer might have: any topic, any bytes."""
    positions = log.log_recorder.insert_events([StoredEvent(uuid.uuid4(), 1, topic, state)])
    assert positions
    return positions[0]


@dataclass
class Replayed:
    """What a fold of the log computes in memory, independently of the projector's store
    and batches: the published change ids in order, and each user's event count."""

    change_ids: list[str]
    event_counts: dict[tuple[str, str], int]


def replay(log: EventLog, skipped: set[int]) -> Replayed:
    """Fold the whole log, without the events at `skipped`."""
    engine = Engine(Policies())
    start = 0
    while page := log.recorder.select_notifications(
        start=start, limit=1000, inclusive_of_start=False
    ):
        for notification in page:
            if notification.id not in skipped:
                engine.apply(log.mapper.to_domain_event(notification), notification.id)
        start = page[-1].id
    changes = [c.change_id for c in engine.drain().changes if c.published]
    return Replayed(changes, {key: user.event_count for key, user in engine.users.items()})


def profile_counts(database_url: str) -> dict[tuple[str, str], int]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT app_id, user_id, event_count FROM projector_profiles")
        return {(app, user): count for app, user, count in rows}


def quarantine_rows(database_url: str, schema_name: str = "public") -> list[tuple[Any, ...]]:
    """(position, app, kind, reason, event_id, user_id, quarantined_us) of every record."""
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            sql.SQL(
                "SELECT position, app_id, kind, reason, event_id, user_id, quarantined_us"
                " FROM {}.projector_quarantine ORDER BY position"
            ).format(sql.Identifier(schema_name))
        ).fetchall()


async def wait_position(app: ProjectorApp, position: int, within: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while app.projection.position < position:
        assert asyncio.get_running_loop().time() < deadline, (
            f"projector stuck at {app.projection.position}, not at {position}"
        )
        await asyncio.sleep(0.05)


async def health_status(port: int, service: str = "") -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
        return int(reply.status)


def positions_of(rows: Sequence[tuple[Any, ...]]) -> list[int]:
    return [row[0] for row in rows]
