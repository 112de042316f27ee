"""Resident memory of the projector per user: RSS at two population sizes, the difference.

The projector holds every user's state in memory (lifecycle, RFM inputs, segment
trackers), so its memory grows with the population. For each size a synthetic history
(tests.bench.history, about 12 events per user over 30 days, hourly ticks) is written
to a fresh log; the projector runs as its own process (`python -m services.projector`,
writing no ticks of its own), folds the whole log and publishes every change; then its
resident set (VmRSS from /proc) is read. It is read again after a restart, when the
state was loaded back from its rows without folding anything: the steady state of a
projector that was restarted, rather than one that folded the history itself.

Bytes per user = the slope of RSS over users, fitted by least squares through three
sizes, so the fixed part (interpreter, libraries, pools: the intercept) cancels out.
RSS is read once it has settled (two readings half a second apart within 0.5%).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time
from pathlib import Path

from services.devstack.embedded import free_port
from services.eventlog.store import open_event_log
from services.projector.replay_check import wait_settled
from tests.bench.history import synthetic, write
from tests.bench.report import Report, Row, sibling_database
from tests.support.changes import delete_stream, unique_streams
from tests.support.infra import NatsForTests
from tests.support.processes import ServiceProcess

NAME = "memory"
MB = 1024 * 1024


def resident_bytes(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in bytes: resident now, and its peak."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields["VmRSS"], fields["VmHWM"]


def settled_rss(pid: int, within_s: float = 10.0) -> tuple[int, int]:
    """(VmRSS, VmHWM) once RSS stops moving: buffers of the last batch released."""
    deadline = time.monotonic() + within_s
    last = resident_bytes(pid)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = resident_bytes(pid)
        if abs(now[0] - last[0]) <= 0.005 * last[0]:
            return now
        last = now
    return last


def _projector(database_url: str, nats_url: str, workdir: Path, stream: object) -> ServiceProcess:
    port = free_port()
    env = {
        "DATABASE_URL": database_url,
        "NATS_URL": nats_url,
        "COHORTFLOW_API_KEYS": "bench:key-bench",
        "PROJECTOR_LISTEN": f"127.0.0.1:{port}",
        "PROJECTOR_METRICS_PORT": "0",
        "PROJECTOR_TICK_INTERVAL_S": "0",
        "CHANGES_STREAM": stream.stream,  # type: ignore[attr-defined]
        "CHANGES_SUBJECT_PREFIX": stream.subject_prefix,  # type: ignore[attr-defined]
        "LOG_LEVEL": "WARNING",
    }
    process = ServiceProcess("services.projector", env, workdir)
    process.wait_healthy(f"127.0.0.1:{port}", timeout=120)
    return process


def measure(database_url: str, nats_url: str, workdir: Path, users: int) -> dict[str, float]:
    """RSS of a projector that folded `users` users' history, and after a restart."""
    log = open_event_log(database_url, pool_size=2)
    events = write(log, synthetic(users, 30, events_per_user_day=1, seed=users))
    log.close()
    stream = unique_streams()
    try:
        process = _projector(database_url, nats_url, workdir, stream)
        started = time.perf_counter()
        try:
            asyncio.run(wait_settled(database_url, timeout_s=1800))
            folded = time.perf_counter() - started
            rss, peak = settled_rss(process.process.pid)
        finally:
            process.terminate()
        restarted = _projector(database_url, nats_url, workdir, stream)
        try:
            asyncio.run(wait_settled(database_url, timeout_s=600))
            rss_restarted, _ = settled_rss(restarted.process.pid)
        finally:
            restarted.terminate()
    finally:
        with contextlib.suppress(Exception):
            asyncio.run(delete_stream(nats_url, stream))
    return {
        "users": users,
        "events": events,
        "fold s": folded,
        "RSS MB": rss / MB,
        "peak MB": peak / MB,
        "RSS after restart MB": rss_restarted / MB,
    }


def run(report: Report, database_url: str, workdir: Path, heavy: bool = False) -> None:
    if not os.path.exists("/proc/self/status"):
        report.add(Row(NAME, "projector RSS per user", {}, "needs Linux /proc"))
        return
    sizes = (50_000, 100_000, 200_000) if heavy else (5_000, 10_000, 20_000)
    servers = NatsForTests(workdir / "memory-nats")
    try:
        figures = []
        for users in sizes:
            with sibling_database(database_url, f"mem{users}") as url:
                figures.append(measure(url, servers.url, workdir, users))
                report.add(Row(NAME, f"projector, {users:,} users", figures[-1]))
    finally:
        servers.close()
    users = [f["users"] for f in figures]
    for label, key in (("after folding", "RSS MB"), ("after a restart", "RSS after restart MB")):
        fit = statistics.linear_regression(users, [f[key] * MB for f in figures])
        per_user, base = fit.slope, fit.intercept
        report.add(
            Row(
                NAME,
                f"projector resident bytes per user, {label}",
                {
                    "bytes/user": per_user,
                    "fixed MB": base / MB,
                    "GB per 1M users": (base + per_user * 1e6) / 1024**3,
                    "GB per 10M users": (base + per_user * 1e7) / 1024**3,
                },
                "slope of RSS over " + ", ".join(f"{u:,}" for u in users) + " users",
            )
        )
