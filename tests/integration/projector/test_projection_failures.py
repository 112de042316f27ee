"""Failures that are not an event's fault quarantine nothing, and health tells the truth.

A connection lost in the middle of a commit, a database that refuses connections, and
a data error that every commit hits (so that even a commit without any one event fails)
all keep the projector retrying from its last commit: nothing is skipped, health says
NOT_SERVING while it cannot commit and SERVING again once it has recovered.
"""

from __future__ import annotations

import psycopg
from grpc_health.v1 import health_pb2
from psycopg import sql

from services.eventlog.store import open_event_log
from services.projector import metrics
from services.projector.bootstrap import OPERATIONS_SERVICE, ProjectorApp
from tests.support.changes import read_all
from tests.support.infra import PostgresForTests
from tests.support.logevents import HOUR, T0, track
from tests.support.projector import (
    InProcessProjector,
    append,
    health_status,
    profile_counts,
    quarantine_rows,
    replay,
    wait_position,
)
from tests.support.waiting import eventually

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _traffic(start: int, users: int = 20) -> list[object]:
    return [track(f"u{i}", start + i * 1000, app="app" if i % 2 else "other") for i in range(users)]


async def _health(app: ProjectorApp, status: int) -> bool:
    return all([await health_status(app.port, name) == status for name in ("", OPERATIONS_SERVICE)])


async def _settled_exactly_once(run: InProcessProjector, last: int) -> None:
    """Everything up to `last` is committed, nothing quarantined, and the change stream
    and profiles are exactly what a fold of the whole log gives."""
    await wait_position(run.app, last)
    assert quarantine_rows(run.database_url) == []
    reader = open_event_log(run.database_url)  # the test's own pool may have lost its connections
    try:
        replayed = replay(reader, set())
    finally:
        reader.close()
    received = await read_all(run.nats_url, run.streams, expect=len(replayed.change_ids))
    assert [r.msg_id for r in received] == replayed.change_ids
    assert profile_counts(run.database_url) == replayed.event_counts
    await eventually(lambda: _health(run.app, SERVING), "health SERVING again")


async def test_connections_lost_in_the_middle_of_a_commit_quarantine_nothing(
    projector: InProcessProjector,
) -> None:
    first = append(projector.log, *_traffic(T0))
    await wait_position(projector.app, first[-1])
    failures = metrics.BATCH_FAILURES._value.get()
    with psycopg.connect(projector.database_url) as locker:
        # Hold the tracking table, so that the projector's next commit waits for us...
        locker.execute("LOCK TABLE projector_tracking IN ACCESS EXCLUSIVE MODE")
        second = append(projector.log, *_traffic(T0 + HOUR))

        async def commit_waits() -> bool:
            row = locker.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            ).fetchone()
            return bool(row and row[0])

        await eventually(commit_waits, "the projector's commit to wait for the lock")
        # ... then cut every connection of the projector (and of this test's log) under it.
        locker.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        locker.rollback()
    await _settled_exactly_once(projector, second[-1])
    assert metrics.BATCH_FAILURES._value.get() > failures


async def test_health_is_not_serving_while_the_database_refuses_connections(
    projector: InProcessProjector, postgres: PostgresForTests
) -> None:
    first = append(projector.log, *_traffic(T0))
    await wait_position(projector.app, first[-1])
    assert await _health(projector.app, SERVING)
    name = sql.Identifier(projector.database_url.rsplit("/", 1)[-1])
    with psycopg.connect(postgres.server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(name))
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (projector.database_url.rsplit("/", 1)[-1],),
            )
            await eventually(lambda: _health(projector.app, NOT_SERVING), "health NOT_SERVING")
            assert metrics.STALLED._value.get() == 1
        finally:
            admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(name))
    await eventually(lambda: _health(projector.app, SERVING), "health SERVING again")
    projector.log.close()
    projector.log = open_event_log(projector.database_url)
    second = append(projector.log, *_traffic(T0 + HOUR))
    await _settled_exactly_once(projector, second[-1])
    assert metrics.STALLED._value.get() == 0


async def test_a_data_error_of_every_commit_skips_no_event(projector: InProcessProjector) -> None:
    first = append(projector.log, *_traffic(T0))
    await wait_position(projector.app, first[-1])
    with psycopg.connect(projector.database_url, autocommit=True) as conn:
        # Every commit writes the recorded clock into projector_meta: make that a data
        # error, which no event causes (a commit without any one of them fails as well).
        conn.execute(
            "CREATE FUNCTION refuse_meta() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'refused' USING ERRCODE = '22023'; END $$"
        )
        conn.execute(
            "CREATE TRIGGER refuse_meta BEFORE INSERT OR UPDATE ON projector_meta"
            " FOR EACH ROW EXECUTE FUNCTION refuse_meta()"
        )
        failures = metrics.BATCH_FAILURES._value.get()
        second = append(projector.log, *_traffic(T0 + HOUR))

        async def wedged() -> bool:
            return metrics.BATCH_FAILURES._value.get() > failures + 1

        await eventually(wedged, "the projector to fail its commits")
        assert await _health(projector.app, NOT_SERVING)
        assert projector.app.projection.position == first[-1]
        assert quarantine_rows(projector.database_url) == []
        conn.execute("DROP TRIGGER refuse_meta ON projector_meta")
    await _settled_exactly_once(projector, second[-1])
