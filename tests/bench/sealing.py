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
from collections.abc import Iterable, Iterator
from pathlib import Path

from services.eventlog.keyring import Keyring
from services.eventlog.sealing import seal, sealed_key_ids, subject_of, unseal_all
from services.eventlog.store import open_event_log
from services.ingest.domain.build import tracked_event
from services.ingest.grpc.convert import event_draft
from services.ingest.sealer import Sealer
from tests.bench.history import synthetic, write
from tests.bench.load import LoadSpec, run_load, sample_event
from tests.bench.projector import _run_projection
from tests.bench.report import Report, Row, percentile, sibling_database
from tests.support.processes import ServiceProcess, ingest_env

NAME = "sealing"
# The fold rows reuse the projector benchmark's run of a Projection from position 0.


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
    _fold_rows(report, database_url, scale)


def _fold_rows(report: Report, database_url: str, scale: int) -> None:
    """The projector (lifecycle + RFM) folding the same synthetic history, stored plain and
    sealed, each in a database of its own."""
    users, days = 5_000 * scale, 14
    rates: list[float] = []
    for sealed in (False, True):
        with sibling_database(database_url, "sealed" if sealed else "plain") as url:
            log = open_event_log(url, pool_size=2)
            events: Iterable[object] = synthetic(users, days, events_per_user_day=4)
            if sealed:
                events = _sealed(Sealer(Keyring(log.log_recorder.datastore)), events)
            count = write(log, iter(events))
            head = log.head_position()
            log.close()
            elapsed, _changes = _run_projection(url, head, 2000)
        rates.append(count / elapsed)
        report.add(
            Row(
                NAME,
                f"projector fold (lifecycle + RFM), {'sealed' if sealed else 'plaintext'}",
                {"events/s": rates[-1], "vs plaintext": rates[-1] / rates[0], "events": count},
                f"{users:,} users, {days} days, 2,000/tx",
            )
        )


def _sealed(sealer: Sealer, events: Iterable[object], chunk: int = 2000) -> Iterator[object]:
    batch: list[object] = []
    for event in events:
        batch.append(event)
        if len(batch) >= chunk:
            yield from sealer.seal_all(batch)
            batch = []
    yield from sealer.seal_all(batch)


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
