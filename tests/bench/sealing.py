"""What sealing personal fields per user costs: ingest with and without it, and the fold's
decode with and without opening the sealed fields.

Ingest runs as its own process, TrackBatch(500) from 2 client processes x 4 callers,
10,000 users (the sealed run creates their 10,000 keys as it goes). The decode rows time
what the projector does per event before folding it: the library's decode, plus, for
sealed events, the key lookup (the keyring's cache, filled as a batch prefetch does) and
AES-GCM opening.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from services.eventlog.keyring import Keyring
from services.eventlog.sealing import seal, sealed_key_ids, subject_of, unseal_all
from services.eventlog.store import open_event_log
from services.ingest.domain.build import tracked_event
from services.ingest.grpc.convert import event_draft
from tests.bench.load import LoadSpec, run_load, sample_event
from tests.bench.report import Report, Row, percentile
from tests.support.processes import ServiceProcess, ingest_env

NAME = "sealing"


def run(report: Report, database_url: str, workdir: Path, heavy: bool = False) -> None:
    scale = 4 if heavy else 1
    plain_rate = 0.0
    for sealed in (False, True):
        env, address, _ = ingest_env(database_url, "bench:bench-key")
        env.update({"LOG_LEVEL": "WARNING", "INGEST_SEAL_PERSONAL": str(sealed).lower()})
        service = ServiceProcess("services.ingest", env, workdir)
        try:
            service.wait_healthy(address)
            spec = LoadSpec(address, "bench-key", "batch", 4, 25 * scale)
            result = run_load(spec, processes=2)
        finally:
            service.terminate()
        plain_rate = plain_rate or result.rate
        report.add(
            Row(
                NAME,
                f"ingest TrackBatch(500), {'sealed' if sealed else 'plaintext'}",
                {
                    "events/s": result.rate,
                    "vs plaintext": result.rate / plain_rate,
                    "p50 ms": percentile(result.latencies, 50) * 1e3,
                    "p99 ms": percentile(result.latencies, 99) * 1e3,
                    "events": result.events,
                },
                "1 worker, 2 client procs x 4 callers, 10,000 users",
            )
        )
    _decode_rows(report, database_url, 20_000 * scale)


def _decode_rows(report: Report, database_url: str, count: int) -> None:
    log = open_event_log(database_url, pool_size=2)
    keyring = Keyring(log.log_recorder.datastore)
    run = uuid.uuid4().hex[:8]
    now = time.time_ns() // 1000
    events = [tracked_event("bench", event_draft(sample_event(n, run)), now) for n in range(count)]
    keys = keyring.active_keys({("bench", subject_of(e)) for e in events})
    started = time.perf_counter()
    sealed = [seal(e, *keys[("bench", subject_of(e))]) for e in events]
    seal_us = (time.perf_counter() - started) / count * 1e6
    plain_states = [log.encode(e) for e in events]
    sealed_states = [log.encode(e) for e in sealed]
    decode = log.mapper.to_domain_event
    started = time.perf_counter()
    for stored in plain_states:
        decode(stored)
    plain_us = (time.perf_counter() - started) / count * 1e6
    keyring.keys(sealed_key_ids(s.state for s in sealed_states))  # as the batch prefetch
    started = time.perf_counter()
    opened = unseal_all([decode(s) for s in sealed_states], keyring)
    sealed_us = (time.perf_counter() - started) / count * 1e6
    assert opened == events
    size = sum(len(s.state) for s in sealed_states) / sum(len(s.state) for s in plain_states)
    log.close()
    report.add(
        Row(NAME, "decode per event, plaintext", {"µs/event": plain_us}, f"{count:,} events")
    )
    report.add(
        Row(
            NAME,
            "decode + open per event, sealed",
            {"µs/event": sealed_us, "vs plaintext": sealed_us / plain_us, "stored size x": size},
            f"10,000 users' keys in the keyring's cache; sealing: {seal_us:.1f} µs/event",
        )
    )
