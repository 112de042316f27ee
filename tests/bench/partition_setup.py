"""What the partitions benchmark stands on: histories routed into P partitions, prepared
once in a template database and copied for every run; leases held back until every
projector process is up; how far the fold has come.

A template holds a migrated deployment (P partitions), optionally 50 segments defined and
built on the empty log by a projector process, then the synthetic history routed as
ingest routes it (each user's events to the user's partition, every tick to every
partition). Each run gets a fresh copy (`CREATE DATABASE ... TEMPLATE`), re-recorded where
it lives, so every case folds the very same log from the start.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import psycopg
from psycopg import sql

from services.common.database import with_database
from services.common.net import free_port
from services.eventlog.deployment_store import DEPLOYMENT_TABLE
from services.eventlog.partitioned import PartitionedLog, open_partitioned_log
from services.eventlog.partitions import Deployment, user_key
from services.migrate import migrate
from services.projector import schema
from services.projector.partitions.leases import PARTITION_LOCKS, PRESENCE_LOCKS
from services.projector.rebuild import PROJECTOR_LOCK
from tests.support.partitioned import EVERYWHERE, builds_appended
from tests.support.processes import ServiceProcess
from tests.support.segment_history import save_segments

APP_KEYS = "app:bench-key"


def route_all(log: PartitionedLog, events: Iterable[object], chunk: int = 2000) -> int:
    """Append `events` to their partitions in order (ticks to every partition), `chunk`
    per transaction and partition; returns how many user events."""
    deployment = log.deployment
    pending: list[list[object]] = [[] for _ in range(deployment.partitions)]
    count = 0

    def flush(partition: int) -> None:
        if pending[partition]:
            log.append(partition, [log.encode(e) for e in pending[partition]])
            pending[partition] = []

    for event in events:
        if isinstance(event, EVERYWHERE):
            targets: Iterable[int] = range(deployment.partitions)
        else:
            count += 1
            app, user, anonymous = (
                getattr(event, "app_id", ""),
                getattr(event, "user_id", ""),
                getattr(event, "anonymous_id", ""),
            )
            targets = [deployment.partition_of(app, user_key(user, anonymous))]
        for partition in targets:
            pending[partition].append(event)
            if len(pending[partition]) >= chunk:
                flush(partition)
    for partition in range(deployment.partitions):
        flush(partition)
    return count


def projector_env(database_url: str, nats_url: str, stream: str) -> dict[str, str]:
    """A projector process publishing to a stream of its own; no ticks (the history has
    them), quiet logs."""
    return {
        "DATABASE_URL": database_url,
        "NATS_URL": nats_url,
        "COHORTFLOW_API_KEYS": APP_KEYS,
        "PROJECTOR_LISTEN": f"127.0.0.1:{free_port()}",
        "PROJECTOR_METRICS_PORT": "0",
        "PROJECTOR_TICK_INTERVAL_S": "0",
        "CHANGES_STREAM": stream,
        "CHANGES_SUBJECT_PREFIX": stream.lower() + ".changes",
        "LOG_LEVEL": "WARNING",
    }


def _segments_live(log: PartitionedLog, count: int) -> bool:
    if log.partitions > 1:
        return builds_appended(log) >= count * log.partitions
    with psycopg.connect(log.deployment.home_url) as conn:
        row = conn.execute("SELECT count(*) FROM segments WHERE state = 'active'").fetchone()
    return row is not None and int(row[0]) >= count


def prepare_template(
    url: str,
    partitions: int,
    segments: dict[str, dict[str, object]],
    history: Iterable[object],
    nats_url: str,
    workdir: Path,
) -> int:
    """Fill the fresh database `url` as a template (see the module); returns the user
    events written. No connection to it stays open."""
    log = open_partitioned_log(migrate(url, partitions=partitions), pool_size=2)
    try:
        if segments:
            save_segments(log.home, segments)
            env = projector_env(url, nats_url, f"BENCH_PREP_{time.monotonic_ns()}")
            builder = ServiceProcess("services.projector", env, workdir)
            try:
                deadline = time.monotonic() + 300
                while not _segments_live(log, len(segments)):
                    assert time.monotonic() < deadline, "segments not built in 300 s"
                    time.sleep(0.2)
            finally:
                builder.terminate()
            with psycopg.connect(url, autocommit=True) as conn:  # what the build published
                conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(schema.OUTBOX_TABLE)))
        return route_all(log, history)
    finally:
        log.close()


@contextlib.contextmanager
def copy_of(template_url: str, suffix: str) -> Iterator[str]:
    """A fresh copy of the template database, its deployment re-recorded where it lives;
    dropped afterwards."""
    template = template_url.rsplit("/", 1)[-1]
    name = f"{template}_{suffix}"
    admin = with_database(template_url, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    url = with_database(template_url, name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                sql.SQL(
                    "UPDATE {} SET databases = (SELECT jsonb_agg(regexp_replace("
                    " d #>> '{{}}', '/[^/]*$', '/' || %s)) FROM jsonb_array_elements(databases) d)"
                ).format(sql.Identifier(DEPLOYMENT_TABLE)),
                (name,),
            )
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def standing(url: str, deployment: Deployment) -> tuple[int, int, int]:
    """(notifications in every partition's log, notifications folded, changes unpublished)."""
    with psycopg.connect(url) as conn:
        heads = 0
        for p in range(deployment.partitions):
            table = sql.Identifier(f"{deployment.log_name(p)}_events")
            row = conn.execute(
                sql.SQL("SELECT coalesce(max(notification_id), 0) FROM {}").format(table)
            ).fetchone()
            heads += int(row[0]) if row else 0
        row = conn.execute(
            sql.SQL("SELECT coalesce(sum(notification_id), 0) FROM {}").format(
                sql.Identifier(schema.TRACKING_TABLE)
            )
        ).fetchone()
        folded = int(row[0]) if row else 0
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema.OUTBOX_TABLE))
        ).fetchone()
        unsent = int(row[0]) if row else 0
    return heads, folded, unsent


@contextlib.contextmanager
def held_back(url: str, partitions: int) -> Iterator[None]:
    """Hold every partition's lease (the projector lock of a one-partition deployment)
    while the block runs: projector processes started in it come up but fold nothing
    until it ends."""
    with psycopg.connect(url, autocommit=True) as conn:
        if partitions > 1:
            for p in range(partitions):
                conn.execute("SELECT pg_advisory_lock(%s, %s)", (PARTITION_LOCKS, p))
        else:
            conn.execute("SELECT pg_advisory_lock(%s)", (PROJECTOR_LOCK,))
        yield


def workers(url: str) -> int:
    """Worker processes announced (holding their presence lock) in the database."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND classid = %s AND database = (SELECT oid FROM pg_database"
            " WHERE datname = current_database())",
            (PRESENCE_LOCKS,),
        ).fetchone()
    return int(row[0]) if row else 0


def shares(url: str) -> list[int]:
    """How many partitions each worker process holds now (by its lease connection)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND classid = %s AND database = (SELECT oid FROM pg_database"
            " WHERE datname = current_database()) GROUP BY pid",
            (PARTITION_LOCKS,),
        )
        return sorted(int(r[0]) for r in rows)
