"""The projector's health and operator gauges against real outages.

With NATS away it still folds and serves reads (overall and API health SERVING), while
the health name of publishing (`cohortflow.projector.relay`) and its check gauge say
that changes cannot go out, and the outbox's depth and age grow; all of it recovers
when NATS is back. The projector lock is held while projecting, and taken again after
its connection was cut.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from grpc_health.v1 import health_pb2

from services.common.grpc.auth import ApiKeys
from services.common.readiness import CHECK_UP
from services.eventlog.store import EventLog, open_event_log
from services.projector import metrics
from services.projector.bootstrap import RELAY_HEALTH, ProjectorApp, start_projector
from services.projector.monitor import refresh
from services.projector.rebuild import PROJECTOR_LOCK
from tests.support.changes import read_all, unique_streams
from tests.support.logevents import HOUR, T0, track
from tests.support.outages import OwnNats
from tests.support.projector import append, health_status, projector_settings, wait_position
from tests.support.waiting import eventually

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
FAST = {"HEALTH_INTERVAL_S": 0.2, "HEALTH_FAILURES": 2, "HEALTH_TIMEOUT_S": 2}


@pytest.fixture
async def own_nats(tmp_path: Path) -> AsyncIterator[OwnNats]:
    server = OwnNats(tmp_path / "nats")
    yield server
    server.stop()


@pytest.fixture
def log(database_url: str) -> Iterator[EventLog]:
    event_log = open_event_log(database_url)
    yield event_log
    event_log.close()


async def _statuses(app: ProjectorApp) -> dict[str, int]:
    names = ("", *app.served.service_names, RELAY_HEALTH)
    return {name: await health_status(app.port, name) for name in names}


def _traffic(start: int, prefix: str = "u", users: int = 10) -> list[object]:
    """First events of new users: each makes changes (it enters the lifecycle)."""
    return [track(f"{prefix}{i}", start + i * 1000) for i in range(users)]


async def test_nats_away_keeps_reads_serving_and_says_changes_cannot_go_out(
    database_url: str, own_nats: OwnNats, log: EventLog
) -> None:
    streams = unique_streams()
    settings = projector_settings(
        database_url, own_nats.url, PROJECTOR_RELAY_ACK_TIMEOUT_S=1, **FAST
    )
    app = await start_projector(settings, ApiKeys([]), streams=streams)
    try:
        first = append(log, *_traffic(T0))
        await read_all(own_nats.url, streams, expect=10)
        assert set((await _statuses(app)).values()) == {SERVING}
        own_nats.stop()

        async def relay_down() -> bool:
            statuses = await _statuses(app)
            return statuses.pop(RELAY_HEALTH) == NOT_SERVING and set(statuses.values()) == {SERVING}

        await eventually(relay_down, "publishing NOT_SERVING, reads still SERVING")
        assert CHECK_UP.labels("relay")._value.get() == 0
        # It still folds: the changes wait in the outbox, and their age shows.
        second = append(log, *_traffic(T0 + HOUR, "v"))
        await wait_position(app, second[-1])
        assert second[-1] > first[-1]
        refresh(app.log, app.store)
        assert metrics.OUTBOX._value.get() > 0
        assert metrics.OUTBOX_OLDEST._value.get() > 0
        own_nats.restart()

        async def all_serving() -> bool:
            return set((await _statuses(app)).values()) == {SERVING}

        await eventually(all_serving, "publishing SERVING again")
        await read_all(own_nats.url, streams, expect=20)

        async def outbox_empty() -> bool:
            refresh(app.log, app.store)
            return metrics.OUTBOX._value.get() == 0 and metrics.OUTBOX_OLDEST._value.get() == 0

        await eventually(outbox_empty, "the outbox published and empty")
        assert CHECK_UP.labels("relay")._value.get() == 1
    finally:
        await app.stop(1)


def _lock_taken_by_someone(database_url: str) -> bool:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (PROJECTOR_LOCK,)).fetchone()
        return not (row and row[0])  # (if we got it, closing the connection frees it)


async def test_the_lock_is_held_and_taken_again_after_its_connection_is_cut(
    database_url: str, nats_server, log: EventLog
) -> None:
    streams = unique_streams()
    with psycopg.connect(database_url, autocommit=True) as standby_maker:
        # Another projector holds the lock: this one waits as a standby, holding nothing.
        standby_maker.execute("SELECT pg_advisory_lock(%s)", (PROJECTOR_LOCK,))
        acquired = metrics.LOCK_ACQUISITIONS._value.get()
        app = await start_projector(
            projector_settings(database_url, nats_server.url, **FAST),
            ApiKeys([]),
            streams=streams,
        )
        try:
            positions = append(log, *_traffic(T0))
            assert metrics.LOCK_HELD._value.get() == 0
            assert app.projection.position == 0
        except BaseException:
            await app.stop(1)
            raise
    try:
        # The other one went away (its connection closed): this one takes over.
        await wait_position(app, positions[-1])
        assert metrics.LOCK_HELD._value.get() == 1
        assert metrics.LOCK_ACQUISITIONS._value.get() == acquired + 1
        assert _lock_taken_by_someone(database_url)
        # Every connection of the database cut, the lock's too: taken again.
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )

        async def taken_again() -> bool:
            return (
                metrics.LOCK_ACQUISITIONS._value.get() == acquired + 2
                and metrics.LOCK_HELD._value.get() == 1
            )

        await eventually(taken_again, "the lock taken again")
        assert _lock_taken_by_someone(database_url)
        reopened = open_event_log(database_url)  # the test's own pool lost its connections
        try:
            more = append(reopened, *_traffic(T0 + HOUR))
        finally:
            reopened.close()
        await wait_position(app, more[-1])
    finally:
        await app.stop(1)
    assert metrics.LOCK_HELD._value.get() == 0
    assert not _lock_taken_by_someone(database_url)
