"""Partitioned deployments run as processes in e2e tests: projector workers, who holds which
partition (the lease locks in PostgreSQL), and a replay of every partition's log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from services.common.jetstream import ChangeStreamSettings
from services.devstack.embedded import free_port
from services.eventlog.partitioned import PartitionedLog
from services.eventlog.partitions import encode_position
from services.projector.config import Policies
from services.projector.domain.engine import Engine
from services.projector.partitions.leases import PARTITION_LOCKS
from tests.support.changes import Received, delete_stream, unique_streams
from tests.support.metrics_scrape import held_partitions
from tests.support.processes import ServiceProcess, ingest_env
from tests.support.waiting import eventually

KEYS = "app:key-app"


class ProjectorWorker:
    """A projector process of a partitioned deployment, with its gRPC and metrics ports."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.port, self.metrics_port = free_port(), free_port()
        own = {
            "PROJECTOR_LISTEN": f"127.0.0.1:{self.port}",
            "PROJECTOR_METRICS_PORT": str(self.metrics_port),
            "PROJECTOR_TICK_INTERVAL_S": "0",
            "PROJECTOR_WATCHDOG_S": "0.2",
            "COHORTFLOW_API_KEYS": KEYS,
        }
        self.process = ServiceProcess("services.projector", {**own, **env}, log_dir)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def held(self) -> set[int]:
        return held_partitions(self.metrics_port)


@dataclass
class PartitionedSuite:
    """Ingest and projector workers of one partitioned deployment, on a stream of their own."""

    ingest_address: str
    workers: list[ProjectorWorker]
    streams: ChangeStreamSettings


@asynccontextmanager
async def partitioned_suite(
    home_url: str, nats_url: str, workers: int, log_dir: Path, placement: str = ""
) -> AsyncIterator[PartitionedSuite]:
    """Ingest and `workers` projector processes, healthy; stopped (SIGTERM) afterwards."""
    streams = unique_streams()
    placed = {"COHORTFLOW_PLACEMENT": placement} if placement else {}
    env = {
        "DATABASE_URL": home_url,
        "NATS_URL": nats_url,
        "CHANGES_STREAM": streams.stream,
        "CHANGES_SUBJECT_PREFIX": streams.subject_prefix,
        **placed,
    }
    ingest_settings, address, _metrics = ingest_env(home_url, KEYS)
    ingest = ServiceProcess("services.ingest", {**ingest_settings, **placed}, log_dir)
    started = [ProjectorWorker(env, log_dir) for _ in range(workers)]
    try:
        await asyncio.to_thread(ingest.wait_healthy, address)
        for worker in started:
            await asyncio.to_thread(worker.process.wait_healthy, worker.address)
        yield PartitionedSuite(address, started, streams)
    finally:
        for worker in started:
            await asyncio.to_thread(worker.process.terminate)
        await asyncio.to_thread(ingest.terminate)
        await delete_stream(nats_url, streams)


async def wait_shared(workers: list[ProjectorWorker], partitions: int) -> None:
    """Until the workers' metrics say they hold every partition, each its even share."""

    async def shared() -> bool:
        held = await asyncio.gather(*(asyncio.to_thread(w.held) for w in workers))
        sizes = [len(h) for h in held]
        whole = set().union(*held) == set(range(partitions)) and sum(sizes) == partitions
        return whole and max(sizes) - min(sizes) <= 1

    await eventually(shared, f"{len(workers)} workers sharing {partitions} partitions evenly")


def lease_holders(database_url: str) -> dict[int, int]:
    """partition -> backend pid of the lease connection holding it, in that database."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT objid, pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND classid = %s AND objsubid = 2 AND database = (SELECT oid FROM pg_database"
            " WHERE datname = current_database())",
            (PARTITION_LOCKS,),
        ).fetchall()
    return {int(partition): int(pid) for partition, pid in rows}


def resumed_after(database_url: str, partitions: int, gone: set[int], within: float) -> float:
    """Seconds until every partition is held by a lease connection not in `gone` (polled
    every 20 ms); raises past `within`, a sanity limit only."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        holders = lease_holders(database_url)
        if len(holders) == partitions and not set(holders.values()) & gone:
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(
        f"partitions not all resumed within {within}s: {lease_holders(database_url)}"
    )


def replayed_changes(log: PartitionedLog) -> Iterator[tuple[str, int]]:
    """(user, user sequence) of every change a fresh fold of each partition's log publishes
    (for histories of user events only: no app-wide facts cross partitions)."""
    for partition in range(log.partitions):
        engine = Engine(Policies())
        notifications = log.recorder(partition).select_notifications(1, 1_000_000)
        engine.apply_all(
            (log.mapper.to_domain_event(n), encode_position(partition, n.id)) for n in notifications
        )
        yield from ((c.user_id, c.sequence) for c in engine.drain().changes if c.published)


def per_user_sequences(received: list[Received]) -> dict[str, list[int]]:
    """Each user's change sequence numbers in the order the stream holds them."""
    out: dict[str, list[int]] = {}
    for r in received:
        out.setdefault(r.header.user_id, []).append(r.header.user_sequence)
    return out
