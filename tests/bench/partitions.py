"""Partitions: projector throughput with 1 and 2 worker processes on P = 8, and ingest on
the partitioned log, each beside one partition (P = 1), with CPU time per event.

1. Ingest: TrackBatch(500) from 2 client processes x 4 callers into one ingest process,
   on P = 1 (one log table) and on P = 8 (a call's events appended to their partitions
   at once); CPU of the ingest process and of PostgreSQL's backends per event.
2. Projector: the same synthetic history (lifecycle + RFM; then again with the 50
   segments of the segments benchmark, defined and built first) routed into P = 1 and
   P = 8; each case folds a fresh copy from the start with real `python -m
   services.projector` processes publishing to an embedded NATS server: P = 1 with its
   one projector, P = 8 with 1 and with 2 worker processes. The processes start while
   the benchmark holds every partition's lease (the projector lock with P = 1), so each
   is up, and the workers know one another, before any folding: then it lets go, and
   each takes its share at once. The fold rate is measured
   from when 10% of the log is folded and the partitions are shared out evenly until 90%
   is (start-up, the first rebalance and the tail outside); CPU time per event (of each
   projector process, of PostgreSQL's backends and of NATS) from that start until every
   change is published, so the relay's work on what was folded is in it.
3. A reading: the CPU split per event projected to 16 and 64 cores, and what saturates.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from services.devstack.embedded import EmbeddedNats
from services.eventlog.deployment_store import load_deployment
from services.migrate import migrate
from tests.bench.cpu_meter import CpuMeter, CpuSample, cpu_between
from tests.bench.history import synthetic
from tests.bench.load import LoadSpec, run_load
from tests.bench.partition_projection import projection
from tests.bench.partition_setup import (
    copy_of,
    held_back,
    prepare_template,
    projector_env,
    shares,
    standing,
    workers,
)
from tests.bench.report import Report, Row, percentile, sibling_database
from tests.bench.segments import fifty_segments
from tests.support.processes import ServiceProcess, ingest_env

NAME = "partitions"
P = 8
# (users, days) of the synthetic history, and TrackBatch calls per ingest caller: the
# default run, and --heavy.
SIZES = {False: (20_000, 7, 25), True: (100_000, 14, 100)}


def _ingest(report: Report, database_url: str, workdir: Path, partitions: int, calls: int) -> None:
    env, address, _ = ingest_env(database_url, "bench:bench-key")
    env["LOG_LEVEL"] = "WARNING"
    service = ServiceProcess("services.ingest", env, workdir)
    try:
        service.wait_healthy(address)
        meter = CpuMeter(database_url, {"ingest": [service.process.pid]})
        before = meter.sample()
        result = run_load(LoadSpec(address, "bench-key", "batch", 4, calls), processes=2)
        spent = cpu_between(before, meter.sample())
    finally:
        service.terminate()
    per_event = {k: v / max(result.events, 1) * 1e6 for k, v in spent.items()}
    report.add(
        Row(
            NAME,
            f"ingest TrackBatch(500), P={partitions}, 1 process, 2 client procs x 4 callers",
            {
                "events/s": result.rate,
                "p99 ms": percentile(result.latencies, 99) * 1e3,
                "ingest CPU us/ev": per_event["ingest"],
                "PG CPU us/ev": per_event["postgres"],
                "events": result.events,
            },
        )
    )


def _window(samples: list[tuple[float, bool, CpuSample]]) -> tuple[tuple[float, CpuSample], ...]:
    """The samples where 10% (and the partitions shared out evenly) and 90% of the log
    were folded; the first and last if the run was too short to tell."""
    start = next(((f, c) for f, even, c in samples if f >= 0.1 and even), None)
    end = next(((f, c) for f, _even, c in samples if f >= 0.9), None)
    if start is None or end is None or end[1].at - start[1].at < 0.5:
        start, end = (samples[0][0], samples[0][2]), (samples[-1][0], samples[-1][2])
    return start, end


def _fold(
    template: str, case: str, processes: int, nats: EmbeddedNats, workdir: Path, events: int
) -> dict[str, Any]:
    """Fold a fresh copy of `template` with `processes` projector processes until every
    partition is folded and every change published; the figures of the steady window."""
    assert nats.process is not None
    with copy_of(template, case) as url:
        deployment = load_deployment(url, None, "")
        stream = f"BENCH_{case.upper()}_{uuid.uuid4().hex[:6]}"
        envs = [projector_env(url, nats.url, stream) for _ in range(processes)]
        procs: list[ServiceProcess] = []
        samples: list[tuple[float, bool, CpuSample]] = []
        even = [P // processes] * processes if deployment.partitions > 1 else []
        try:
            with held_back(url, deployment.partitions):
                for env in envs:
                    procs.append(ServiceProcess("services.projector", env, workdir))
                for proc, env in zip(procs, envs, strict=True):
                    proc.wait_healthy(env["PROJECTOR_LISTEN"], timeout=120)
                while deployment.partitions > 1 and workers(url) < processes:
                    time.sleep(0.1)
            roles = {f"projector-{i}": [p.process.pid] for i, p in enumerate(procs)}
            meter = CpuMeter(url, {**roles, "nats": [nats.process.pid]})
            started = time.perf_counter()
            while True:
                heads, folded, unsent = standing(url, deployment)
                balanced = not even or shares(url) == even
                samples.append((folded / max(heads, 1), balanced, meter.sample()))
                if folded >= heads and unsent == 0:
                    break
                for proc in procs:
                    if proc.process.poll() is not None:
                        raise RuntimeError(f"a projector exited:\n{proc.output()[-3000:]}")
                assert time.perf_counter() - started < 1800, "not folded in 30 minutes"
                time.sleep(0.25)
        finally:
            for proc in procs:
                proc.terminate()
    (f0, a), (f1, b) = _window(samples)
    last = samples[-1][2]
    folded_at = next(c.at for f, _even, c in samples if f >= 1.0)
    # CPU from the window's start until every change is published (the relay's share of
    # what was folded in the window may come after it), per event folded in that span.
    span_events = events * (1 - f0)
    spent = cpu_between(a, last)
    projector_cpu = sum(v for k, v in spent.items() if k.startswith("projector"))
    return {
        "events/s": events * (f1 - f0) / (b.at - a.at),
        "to published events/s": span_events / (last.at - a.at),
        "start s": a.at - started,
        "publish tail s": last.at - folded_at,
        "projector CPU us/ev": projector_cpu / span_events * 1e6,
        "per process CPU %": 100 * projector_cpu / (last.at - a.at) / processes,
        "PG CPU us/ev": spent["postgres"] / span_events * 1e6,
        "NATS CPU us/ev": spent["nats"] / span_events * 1e6,
        "events": events,
    }


def _projector_cases(
    report: Report, database_url: str, workdir: Path, heavy: bool, nats: EmbeddedNats
) -> dict[str, dict[str, dict[str, Any]]]:
    users, days, _calls = SIZES[heavy]
    measured: dict[str, dict[str, dict[str, Any]]] = {}
    for workload, segments in (("lifecycle + RFM", {}), ("50 segments", fifty_segments())):
        cases = measured[workload] = {}
        for partitions in (1, P):
            tag = f"{'seg' if segments else 'plain'}{partitions}"
            with sibling_database(database_url, tag, migrated=False) as template:
                history = synthetic(users, days, events_per_user_day=2, seed=7)
                print(f"[{NAME}] {workload}, P={partitions}: preparing...", flush=True)
                events = prepare_template(
                    template, partitions, segments, history, nats.url, workdir
                )
                for processes in (1, 2) if partitions > 1 else (1,):
                    key = f"P={partitions}, {processes} process{'es' if processes > 1 else ''}"
                    case = f"{tag}x{processes}"
                    cases[key] = _fold(template, case, processes, nats, workdir, events)
                    report.add(Row(NAME, f"projector, {workload}: {key}", _compared(cases, key)))
    return measured


def _compared(cases: dict[str, dict[str, Any]], key: str) -> dict[str, Any]:
    """The figures of case `key`, with its rate beside P = 1's and (2 processes) beside one
    process's on the same partitions."""
    figures = cases[key]
    if not key.startswith("P=1,"):
        figures["vs P=1"] = figures["events/s"] / cases["P=1, 1 process"]["events/s"]
    if key.endswith("2 processes"):
        one = cases[key.replace("2 processes", "1 process")]["events/s"]
        figures["2 vs 1 processes"] = figures["events/s"] / one
    return figures


def run(report: Report, database_url: str, workdir: Path, heavy: bool = False) -> None:
    calls = SIZES[heavy][2]
    _ingest(report, database_url, workdir, 1, calls)
    with sibling_database(database_url, "ing8", migrated=False) as url:
        migrate(url, partitions=P)
        _ingest(report, url, workdir, P, calls)
    nats = EmbeddedNats(workdir / "partitions-nats")
    nats.start()
    try:
        measured = _projector_cases(report, database_url, workdir, heavy, nats)
    finally:
        nats.stop()
    for text in projection(measured, f"P={P}, 2 processes"):
        report.say(NAME, text)
