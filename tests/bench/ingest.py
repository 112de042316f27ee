"""Ingest throughput and latency, beside raw psycopg inserts of the same rows.

The ingest service runs as its own process (as in production); load comes from
separate client processes; PostgreSQL is the same server for both the service
and the baseline. The baseline inserts the very rows the service stores (same
uuid/version/topic/state values) with executemany, 500 rows per transaction,
into a table shaped like the event store's.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import psycopg

from services.eventlog.store import open_event_log
from services.ingest.domain.build import tracked_event
from services.ingest.grpc.convert import event_draft
from tests.bench.load import LoadSpec, Worker, run_load, sample_event
from tests.bench.report import Report, Row, percentile
from tests.bench.segment_load import http_worker
from tests.support.processes import ServiceProcess, ingest_env

NAME = "ingest"


def _baseline_rows(database_url: str, count: int) -> list[tuple]:
    log = open_event_log(database_url, pool_size=1)
    rows = []
    run = uuid.uuid4().hex[:8]
    for n in range(count):
        draft = event_draft(sample_event(n, f"raw-{run}"))
        stored = log.encode(tracked_event("bench", draft, time.time_ns() // 1000))
        rows.append((stored.originator_id, 1, stored.topic, stored.state))
    log.close()
    return rows


def raw_insert_rate(database_url: str, count: int, per_tx: int = 500) -> float:
    rows = _baseline_rows(database_url, count)
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_raw_events ("
            " originator_id uuid NOT NULL, originator_version bigint NOT NULL,"
            " topic text, state bytea, notification_id bigserial,"
            " PRIMARY KEY (originator_id, originator_version))"
        )
        conn.execute(
            "CREATE UNIQUE INDEX IF NOT EXISTS bench_raw_events_nid"
            " ON bench_raw_events (notification_id)"
        )
        conn.commit()
        start = time.perf_counter()
        with conn.cursor() as cur:
            for i in range(0, count, per_tx):
                cur.executemany(
                    "INSERT INTO bench_raw_events"
                    " (originator_id, originator_version, topic, state) VALUES (%s, %s, %s, %s)",
                    rows[i : i + per_tx],
                )
                conn.commit()
        return count / (time.perf_counter() - start)


def _wait_serving(url: str, within: float = 30.0) -> None:
    """Until the HTTP API answers /healthz (the gRPC health check came first)."""
    deadline = time.monotonic() + within
    while True:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def run(report: Report, database_url: str, workdir: Path, heavy: bool = False) -> None:
    scale = 4 if heavy else 1
    raw = raw_insert_rate(database_url, 100_000 * scale)
    report.add(
        Row(
            NAME,
            "baseline: psycopg executemany, 500 rows/tx",
            {"events/s": raw},
            "same rows, one connection, table shaped like the event store",
        )
    )
    for workers in (1, 2):
        env, address, _ = ingest_env(database_url, "bench:bench-key")
        env["LOG_LEVEL"] = "WARNING"
        env["INGEST_WORKERS"] = str(workers)
        service = ServiceProcess("services.ingest", env, workdir)
        try:
            service.wait_healthy(address)
            http = f"http://{env['INGEST_HTTP_LISTEN']}"
            _wait_serving(http)
            callers = f"{workers} worker(s), 2 client procs x"
            cases: list[tuple[str, LoadSpec, Worker | None]] = [
                (
                    f"TrackBatch(500), {callers} 4 callers",
                    LoadSpec(address, "bench-key", "batch", 4, 25 * scale),
                    None,
                ),
                # The same events, batch size and concurrency, as Segment JSON over HTTP.
                (
                    f"Segment HTTP /v1/batch(500), {callers} 4 callers",
                    LoadSpec(http, "bench-key", "segment", 4, 25 * scale),
                    http_worker,
                ),
                (
                    f"Track unary, {callers} 32 callers",
                    LoadSpec(address, "bench-key", "unary", 32, 150 * scale, 1),
                    None,
                ),
            ]
            for label, spec, worker in cases:
                result = run_load(spec, processes=2, worker=worker)
                report.add(
                    Row(
                        NAME,
                        label,
                        {
                            "events/s": result.rate,
                            "vs baseline": result.rate / raw,
                            "p50 ms": percentile(result.latencies, 50) * 1e3,
                            "p99 ms": percentile(result.latencies, 99) * 1e3,
                            "events": result.events,
                        },
                    )
                )
        finally:
            service.terminate()
