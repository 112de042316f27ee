"""What a durable change stream costs: the outbox relay onto JetStream with and without
`sync_interval: always`, on one server and on a three-server cluster (stream at R3).

The changes come from folding a one-day synthetic history (the real projector, so real
change messages); the outbox is copied aside and restored before every measurement, so
each configuration relays the same rows. The four configurations run side by side, their
rounds interleaved so that load on the shared machine spreads over all of them; the figure
is the median of the rounds. Baseline in the same run: NATS' default (fsync every 2 min).
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from services.common.jetstream import ChangeStreamSettings, ChangeSubjects, ensure_change_stream
from services.devstack.embedded import EmbeddedNats
from services.eventlog.store import open_event_log
from services.projector.adapters.outbox import OutboxQueries
from services.projector.adapters.relay import OutboxRelay, connect_jetstream
from services.projector.adapters.store import open_store
from services.projector.schema import OUTBOX_TABLE
from tests.bench.history import synthetic, write
from tests.bench.projector import _run_projection
from tests.bench.report import Report, Row
from tests.support.nats_cluster import NatsCluster

NAME = "durability"
PREFIX = "bench.changes"  # the subjects _run_projection's store writes
COPY = "bench_outbox_copy"


@dataclass
class Setup:
    case: str
    replicas: int
    sync_always: bool
    server: EmbeddedNats | NatsCluster
    rates: list[float] = field(default_factory=list)


def _fill_outbox(database_url: str, users: int) -> int:
    """Fold a one-day history; keep a copy of the changes it left in the outbox."""
    log = open_event_log(database_url, pool_size=2)
    write(log, synthetic(users, 1, events_per_user_day=3))
    head = log.head_position()
    log.close()
    _run_projection(database_url, head, 2000)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {COPY} AS SELECT * FROM {OUTBOX_TABLE} ORDER BY id")
        row = conn.execute(f"SELECT count(*) FROM {COPY}").fetchone()
    return int(row[0]) if row else 0


def _restore_outbox(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {OUTBOX_TABLE}")
        conn.execute(f"INSERT INTO {OUTBOX_TABLE} SELECT * FROM {COPY} ORDER BY id")


async def _relay(database_url: str, url: str, replicas: int, changes: int) -> float:
    """Relay the whole outbox onto a fresh stream; changes/s. Checks every change arrived."""
    store = open_store(database_url, ChangeSubjects(PREFIX), pool_size=2)
    nc, js = await connect_jetstream(url)
    stream = ChangeStreamSettings(
        CHANGES_STREAM=f"BENCH_DURABLE_{uuid.uuid4().hex[:8]}",
        CHANGES_SUBJECT_PREFIX=PREFIX,
        CHANGES_REPLICAS=replicas,
    )
    try:
        await ensure_change_stream(js, stream)
        relay = OutboxRelay(OutboxQueries(store), js)
        started = time.perf_counter()
        while await relay.publish_once():
            pass
        elapsed = time.perf_counter() - started
        stored = (await js.stream_info(stream.stream)).state.messages
        if stored != changes or relay.published != changes:
            msg = f"relayed {relay.published}, stream holds {stored}, expected {changes}"
            raise AssertionError(msg)
        await js.delete_stream(stream.stream)
        return changes / elapsed
    finally:
        await nc.close()
        store.datastore.close()


def run(report: Report, database_url: str, workdir: Path, heavy: bool = False) -> None:
    users, rounds = (100_000, 7) if heavy else (40_000, 5)
    changes = _fill_outbox(database_url, users)
    setups = []
    for replicas, label in ((1, "1 server, stream R1"), (3, "3-server cluster, stream R3")):
        for sync_always in (False, True):
            folder = workdir / f"nats-{replicas}-{'always' if sync_always else 'default'}"
            server: EmbeddedNats | NatsCluster = (
                EmbeddedNats(folder, sync_always=sync_always)
                if replicas == 1
                else NatsCluster(folder, sync_always=sync_always)
            )
            setups.append(Setup(label, replicas, sync_always, server))
    try:
        for setup in setups:
            setup.server.start()
        for _ in range(rounds):
            for setup in setups:
                _restore_outbox(database_url)
                rate = asyncio.run(_relay(database_url, setup.server.url, setup.replicas, changes))
                setup.rates.append(rate)
    finally:
        for setup in setups:
            setup.server.stop()
    for default, always in zip(setups[::2], setups[1::2], strict=True):
        base = statistics.median(default.rates)
        for setup in (default, always):
            rate = statistics.median(setup.rates)
            sync = "sync_interval: always" if setup.sync_always else "fsync every 2 min (default)"
            figures: dict[str, float | int | str] = {
                "changes": changes,
                "changes/s": rate,
                "rounds": " / ".join(f"{r:,.0f}" for r in setup.rates),
            }
            if setup.sync_always:
                figures["vs default"] = rate / base
            report.add(Row(NAME, f"outbox relay -> {setup.case}, {sync}", figures))
