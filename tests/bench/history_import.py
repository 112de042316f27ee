"""History import end to end (issue 14.7), beside the live projector fold of the same events.

1. The simulator writes a year of U users' events to a JSON-lines file (about 86 events a
   user a year: users drift to dormancy), in cohortflow's import shape.
2. Import: ingest and projector as processes; `cohortflow import --history FILE` reads the
   file, uploads it (staged), ingest appends it sorted with the app's ticks, the projector
   folds it in history mode; the command returns once the projector has folded the
   Finished marker. Wall time and events/s of the whole, the upload's own rate, and when
   (seconds after the start) ingest had appended it all and the projector folded it all.
3. Baseline in the same run: the same events written straight into another database's log
   in time order with hourly ticks (as they would have arrived live), folded by the
   projector (the real engine, store and follower, 2,000 per transaction).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import psycopg

from services.devstack.embedded import free_port
from services.eventlog.events import EventTracked, datetime_to_us, event_uuid
from services.eventlog.store import open_event_log
from services.ingest.schema import HISTORY_JOBS_TABLE
from tests.bench.history import write
from tests.bench.projector import _run_projection
from tests.bench.report import Report, Row, sibling_database
from tests.support.cli import COMMAND
from tests.support.history_file import write_simulated_history
from tests.support.infra import NatsForTests
from tests.support.logevents import HOUR, tick
from tests.support.processes import ServiceProcess, ingest_env

NAME = "history"
APP, KEY = "bench", "bench-key"


def _live(path: Path) -> Iterator[object]:
    """The file's events as they would have arrived live: in time order (the simulator
    writes them so), each after the hourly ticks before it."""
    next_tick: int | None = None
    with path.open("rb") as lines:
        for line in lines:
            data = orjson.loads(line)
            at = datetime_to_us(datetime.fromisoformat(data["event_time"]))
            if next_tick is None:
                next_tick = at - at % HOUR
            while next_tick <= at:
                yield tick(next_tick)
                next_tick += HOUR
            yield EventTracked(
                originator_id=event_uuid(APP, "track", data["event_id"]),
                originator_version=1,
                app_id=APP,
                event_id=data["event_id"],
                user_id=data["user_id"],
                anonymous_id="",
                name=data["name"],
                event_time_us=at,
                received_time_us=at,
                properties={
                    k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v
                    for k, v in data["properties"].items()
                },
                context=data["context"],
            )


def live_fold(report: Report, database_url: str, path: Path, events: int, users: int) -> float:
    log = open_event_log(database_url, pool_size=2)
    write(log, _live(path))
    head = log.head_position()
    log.close()
    elapsed, changes = _run_projection(database_url, head, 2000)
    rate = events / elapsed
    report.add(
        Row(
            NAME,
            "baseline: live projector fold of the same events (hourly ticks), 2,000/tx",
            {
                "events": events,
                "users": users,
                "events/s": rate,
                "wall s": elapsed,
                "changes": changes,
            },
        )
    )
    return rate


def _processes(
    database_url: str, nats_url: str, workdir: Path
) -> tuple[list[ServiceProcess], str, str]:
    env, ingest_address, _ = ingest_env(database_url, f"{APP}:{KEY}")
    env["LOG_LEVEL"] = "WARNING"
    ingest = ServiceProcess("services.ingest", env, workdir)
    projector_address = f"127.0.0.1:{free_port()}"
    projector = ServiceProcess(
        "services.projector",
        {
            "DATABASE_URL": database_url,
            "NATS_URL": nats_url,
            "COHORTFLOW_API_KEYS": f"{APP}:{KEY}",
            "PROJECTOR_LISTEN": projector_address,
            "PROJECTOR_METRICS_PORT": "0",
            "CHANGES_STREAM": "BENCH_HISTORY",
            "CHANGES_SUBJECT_PREFIX": "bench_history.changes",
            "LOG_LEVEL": "WARNING",
        },
        workdir,
    )
    ingest.wait_healthy(ingest_address)
    projector.wait_healthy(projector_address)
    return [ingest, projector], ingest_address, projector_address


def imported(
    report: Report, database_url: str, workdir: Path, path: Path, events: int, users: int
) -> float:
    nats_server = NatsForTests(workdir)
    processes: list[ServiceProcess] = []
    try:
        processes, ingest_address, projector_address = _processes(
            database_url, nats_server.url, workdir
        )
        started, began = time.perf_counter(), datetime.now(UTC)
        done = subprocess.run(
            [*COMMAND, "import", "--history", str(path)],
            env={
                **os.environ,
                "COHORTFLOW_INGEST": ingest_address,
                "COHORTFLOW_PROJECTOR": projector_address,
                "COHORTFLOW_API_KEY": KEY,
            },
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - started
    finally:
        for process in processes:
            process.terminate()
        nats_server.close()
    if done.returncode != 0 or "folded by the projector" not in done.stdout:
        raise RuntimeError(f"the import failed:\n{done.stdout}\n{done.stderr}")
    upload = re.search(r"in ([\d.]+) s \(([\d,]+) events/s\)", done.stdout)
    with psycopg.connect(database_url) as conn:
        row = conn.execute(f"SELECT max(ended_at) FROM {HISTORY_JOBS_TABLE}").fetchone()
    appended = (row[0] - began).total_seconds() if row and row[0] else 0.0
    rate = events / wall
    report.add(
        Row(
            NAME,
            "cohortflow import --history: file -> staged -> appended -> folded",
            {
                "events": events,
                "users": users,
                "events/s": rate,
                "wall s": wall,
                "upload s": float(upload.group(1)) if upload else 0.0,
                "upload events/s": int(upload.group(2).replace(",", "")) if upload else 0,
                "appended at s": appended,
                "folded at s": wall,
            },
            note="one ingest and one projector process, one partition",
        )
    )
    return rate


def run(report: Report, database_url: str, workdir: Path, heavy: bool = False) -> None:
    users = 100_000 if heavy else 5_000
    path = workdir / "history.jsonl"
    started = time.perf_counter()
    events = write_simulated_history(path, users=users, days=364, seed=7)
    report.add(
        Row(
            NAME,
            "simulator: a year of history written to a file",
            {"events": events, "users": users, "wall s": time.perf_counter() - started},
        )
    )
    with sibling_database(database_url, "live") as live_db:
        live = live_fold(report, live_db, path, events, users)
    rate = imported(report, database_url, workdir, path, events, users)
    report.add(
        Row(
            NAME,
            "history import vs live fold (events/s ratio); goal 20,000 events/s",
            {"ratio": rate / live, "import events/s": rate, "live fold events/s": live},
        )
    )
    path.unlink()
