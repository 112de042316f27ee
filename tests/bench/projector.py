"""Projector throughput beside a bare batched projector, and Track-to-NATS latency.

1. Throughput: a synthetic history is written to the log first; then the
   projector (lifecycle + RFM, the real engine, store and follower) folds it
   from position 0 to the head. Baseline in the same run: a bare batched
   projector over the same log (same reads and decoding, a per-user counter as
   the only fold, one transaction per batch with its tracking position).
2. Publishing: the changes that fold left in the outbox go to JetStream through the
   projector's relay (in order, acks awaited, published rows deleted); baseline in the
   same run: raw `publish_async` of the same messages onto another stream.
3. Latency: ingest and projector as processes; TrackBatch calls at a steady
   2,000 events/s, each event a new user (so each makes a change); a NATS
   subscriber timestamps every change; latency = change received - Track acked.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from pathlib import Path

import grpc
import nats
import psycopg
from cohortflow.changes.v1 import changes_pb2
from cohortflow.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from eventsourcing.persistence import Tracking

from services.common.jetstream import (
    MSG_ID_HEADER,
    TYPE_HEADER,
    ChangeStreamSettings,
    ChangeSubjects,
    ensure_change_stream,
)
from services.devstack.embedded import free_port
from services.eventlog.store import LOG_NAME, open_event_log
from services.projector.adapters.follower import LogFollower
from services.projector.adapters.outbox import OutboxQueries
from services.projector.adapters.relay import OutboxRelay, connect_jetstream
from services.projector.adapters.store import open_store
from services.projector.config import Policies
from services.projector.runner import Projection
from tests.bench.history import synthetic, write
from tests.bench.report import Report, Row, percentile, sibling_database
from tests.support.infra import NatsForTests
from tests.support.processes import ServiceProcess, ingest_env

NAME = "projector"


def _run_projection(database_url: str, head: int, batch: int) -> tuple[float, int]:
    log = open_event_log(database_url, pool_size=2)
    store = open_store(database_url, ChangeSubjects("bench.changes"), pool_size=3)
    follower = LogFollower(log, database_url, batch_size=batch, wait_s=0.2)
    stop = threading.Event()
    projection = Projection(log, store, follower, Policies())

    def done() -> None:
        if projection.position >= head:
            stop.set()

    projection._on_commit = done
    started = time.perf_counter()
    projection.run(stop)
    elapsed = time.perf_counter() - started
    with store.cursor() as curs:
        curs.execute("SELECT count(*) AS n FROM projector_changes")
        row = curs.fetchone()
        changes = int(row["n"]) if row else 0
    log.close()
    store.datastore.close()
    return elapsed, changes


def _run_bare(database_url: str, head: int, batch: int) -> float:
    """Same reads and decoding; the fold is a per-user counter."""
    log = open_event_log(database_url, pool_size=2)
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_bare_counts ("
            " app_id text, user_id text, events bigint, PRIMARY KEY (app_id, user_id))"
        )
        conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_bare_tracking"
            " (name text PRIMARY KEY, position bigint)"
        )
        conn.commit()
    store = open_store(database_url, ChangeSubjects("bench.changes"), pool_size=2)
    counts: dict[tuple[str, str], int] = {}
    position = 0
    started = time.perf_counter()
    while position < head:
        notes = log.recorder.select_notifications(
            start=position, limit=batch, inclusive_of_start=False
        )
        dirty: dict[tuple[str, str], int] = {}
        for n in notes:
            event = log.mapper.to_domain_event(n)
            user = getattr(event, "user_id", None)
            if user:
                key = (event.app_id, user)  # type: ignore[attr-defined]
                counts[key] = dirty[key] = counts.get(key, 0) + 1
        position = notes[-1].id
        with store.datastore.transaction(commit=True) as curs:
            curs.executemany(
                "INSERT INTO bench_bare_counts VALUES (%s, %s, %s) ON CONFLICT (app_id, user_id)"
                " DO UPDATE SET events = EXCLUDED.events",
                [(a, u, c) for (a, u), c in dirty.items()],
            )
            curs.execute(
                "INSERT INTO bench_bare_tracking VALUES (%s, %s) ON CONFLICT (name)"
                " DO UPDATE SET position = EXCLUDED.position",
                (LOG_NAME, position),
            )
    elapsed = time.perf_counter() - started
    _ = Tracking  # the real projector writes its position with eventsourcing's Tracking
    log.close()
    store.datastore.close()
    return elapsed


def throughput(report: Report, database_url: str, heavy: bool) -> None:
    users, days = (100_000, 30) if heavy else (20_000, 30)
    log = open_event_log(database_url, pool_size=2)
    count = write(log, synthetic(users, days, events_per_user_day=4))
    head = log.head_position()
    log.close()
    bare = _run_bare(database_url, head, 2000)
    report.add(
        Row(
            NAME,
            "baseline: bare batched projector (counter fold), 2,000/tx",
            {"events": count, "users": users, "events/s": count / bare},
        )
    )
    elapsed, changes = _run_projection(database_url, head, 2000)
    report.add(
        Row(
            NAME,
            "projector: lifecycle + RFM, 2,000/tx",
            {
                "events": count,
                "users": users,
                "events/s": count / elapsed,
                "vs baseline": (count / elapsed) / (count / bare),
                "changes": changes,
            },
        )
    )


async def _publish_rates(database_url: str, nats_url: str) -> tuple[int, float, float]:
    """(changes, raw publish_async changes/s, outbox relay changes/s) of the outbox the
    throughput run left, each onto a stream of its own."""
    store = open_store(database_url, ChangeSubjects("bench.changes"), pool_size=2)
    nc, js = await connect_jetstream(nats_url)
    tag = uuid.uuid4().hex[:8]
    raw = ChangeStreamSettings(CHANGES_STREAM=f"BENCH_RAW_{tag}", CHANGES_SUBJECT_PREFIX="raw")
    relayed = ChangeStreamSettings(
        CHANGES_STREAM=f"BENCH_RELAY_{tag}", CHANGES_SUBJECT_PREFIX="bench.changes"
    )
    try:
        for settings in (raw, relayed):
            await ensure_change_stream(js, settings)
        rows = await asyncio.to_thread(OutboxQueries(store).batch, 10_000_000)
        started = time.perf_counter()
        for _id, subject, msg_id, msg_type, payload in rows:
            await js.publish_async(
                "raw." + subject.removeprefix("bench.changes."),
                payload,
                headers={MSG_ID_HEADER: msg_id, TYPE_HEADER: msg_type},
            )
        await js.publish_async_completed()
        raw_s = time.perf_counter() - started
        relay = OutboxRelay(OutboxQueries(store), js)
        started = time.perf_counter()
        while await relay.publish_once():
            pass
        relay_s = time.perf_counter() - started
        for settings in (raw, relayed):
            await js.delete_stream(settings.stream)
        return len(rows), len(rows) / raw_s, relay.published / relay_s
    finally:
        await nc.close()
        store.datastore.close()


def publishing(report: Report, database_url: str, workdir: Path) -> None:
    nats_server = NatsForTests(workdir)
    try:
        count, raw, relay = asyncio.run(_publish_rates(database_url, nats_server.url))
    finally:
        nats_server.close()
    report.add(
        Row(
            NAME,
            "baseline: raw JetStream publish_async of the same change messages",
            {"changes": count, "changes/s": raw},
        )
    )
    report.add(
        Row(
            NAME,
            "outbox relay -> JetStream (read outbox, publish in order, await acks, delete)",
            {"changes": count, "changes/s": relay, "vs baseline": relay / raw},
        )
    )


async def _latency(database_url: str, nats_url: str, workdir: Path, rate: int, seconds: int):
    tag = uuid.uuid4().hex[:8]
    stream, prefix = f"BENCH_{tag}", f"bench_{tag}.changes"
    env, address, _ = ingest_env(database_url, "bench:bench-key")
    env["LOG_LEVEL"] = "WARNING"
    ingest = ServiceProcess("services.ingest", env, workdir)
    projector_port = free_port()
    projector = ServiceProcess(
        "services.projector",
        {
            "DATABASE_URL": database_url,
            "NATS_URL": nats_url,
            "COHORTFLOW_API_KEYS": "bench:bench-key",
            "PROJECTOR_LISTEN": f"127.0.0.1:{projector_port}",
            "PROJECTOR_METRICS_PORT": "0",
            "CHANGES_STREAM": stream,
            "CHANGES_SUBJECT_PREFIX": prefix,
            "LOG_LEVEL": "WARNING",
        },
        workdir,
    )
    nc = await nats.connect(nats_url)
    acked: dict[str, float] = {}
    latencies: list[float] = []

    async def on_change(msg: nats.aio.msg.Msg) -> None:
        received = time.perf_counter()
        change = changes_pb2.LifecycleChanged()
        change.ParseFromString(msg.data)
        for event_id in change.header.cause.event_ids:
            sent = acked.pop(event_id, None)
            if sent is not None:
                latencies.append(received - sent)

    try:
        ingest.wait_healthy(address)
        projector.wait_healthy(f"127.0.0.1:{projector_port}")
        await nc.subscribe(f"{prefix}.*.lifecycle", cb=on_change)
        per_call = 20
        interval = per_call / rate
        calls = int(seconds * rate / per_call)
        async with grpc.aio.insecure_channel(address) as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            metadata = [("authorization", "Bearer bench-key")]

            async def call(n: int) -> None:
                events = [
                    ingest_pb2.Event(
                        event_id=f"{tag}-{n}-{i}", user_id=f"{tag}-{n}-{i}", name="App Opened"
                    )
                    for i in range(per_call)
                ]
                await stub.TrackBatch(
                    ingest_pb2.TrackBatchRequest(events=events), metadata=metadata
                )
                now = time.perf_counter()
                for event in events:
                    acked[event.event_id] = now

            start = time.perf_counter()
            tasks = []
            for n in range(calls):
                delay = start + n * interval - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(call(n)))
            await asyncio.gather(*tasks)
            sent_rate = calls * per_call / (time.perf_counter() - start)
        deadline = time.perf_counter() + 30
        while acked and time.perf_counter() < deadline:  # noqa: ASYNC110 - polling a dict
            await asyncio.sleep(0.1)
        return sent_rate, latencies, len(acked)
    finally:
        await nc.close()
        projector.terminate()
        ingest.terminate()
        nc2 = await nats.connect(nats_url)
        with contextlib.suppress(Exception):  # best-effort cleanup
            await nc2.jetstream().delete_stream(stream)
        await nc2.close()


def latency(report: Report, database_url: str, workdir: Path, heavy: bool) -> None:
    nats_server = NatsForTests(workdir)
    try:
        rate, seconds = 2000, 40 if heavy else 20
        sent_rate, latencies, missing = asyncio.run(
            _latency(database_url, nats_server.url, workdir, rate, seconds)
        )
    finally:
        nats_server.close()
    report.add(
        Row(
            NAME,
            f"Track ack -> change on NATS, steady {rate:,} events/s for {seconds} s",
            {
                "sent events/s": sent_rate,
                "changes": len(latencies),
                "p50 ms": percentile(latencies, 50) * 1e3,
                "p99 ms": percentile(latencies, 99) * 1e3,
                "max ms": max(latencies) * 1e3 if latencies else float("nan"),
                "missing": missing,
            },
            "each event a new user, so each makes a lifecycle change",
        )
    )


def run(report: Report, database_url: str, workdir: Path, heavy: bool = False) -> None:
    throughput(report, database_url, heavy)
    publishing(report, database_url, workdir)
    with sibling_database(database_url, "lat") as fresh:
        latency(report, fresh, workdir, heavy)
