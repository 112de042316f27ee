"""SIGKILL the projector mid-stream, restart it: every change arrives exactly once.

The expected changes are computed by the pure engine over the very same log, so
the stream must hold exactly those change ids (none missing, none twice) and
each user's changes in order.
"""

from __future__ import annotations

import asyncio
import random
import threading
from pathlib import Path

from services.devstack.embedded import free_port
from services.eventlog.store import open_event_log
from services.projector.domain.engine import Engine
from tests.support.changes import delete_stream, read_all, unique_streams
from tests.support.infra import NatsForTests
from tests.support.logevents import DAY, T0, purchase, tick, track
from tests.support.processes import ServiceProcess


def write_history(database_url: str, stop: threading.Event, done: threading.Event) -> None:
    """Two simulated months of 400 users, written in chunks while the projector runs."""
    rng = random.Random(7)
    log = open_event_log(database_url, pool_size=1)
    try:
        now = T0
        for _day in range(60):
            if stop.is_set():
                break
            events: list[object] = []
            for user in range(400):
                if rng.random() < 0.25 / (1 + user % 5):
                    at = now + rng.randrange(DAY)
                    if rng.random() < 0.1:
                        events.append(purchase(f"u{user}", at, revenue=rng.uniform(5, 200)))
                    else:
                        events.append(track(f"u{user}", at))
            events.sort(key=lambda e: e.event_time_us)
            events.append(tick(now + DAY))
            for start in range(0, len(events), 50):
                log.append_new([log.encode(e) for e in events[start : start + 50]])
            now += DAY
            stop.wait(0.15)  # a steady stream, so the kills land in the middle of it
    finally:
        log.close()
        done.set()


def expected_changes(database_url: str) -> list[str]:
    log = open_event_log(database_url, pool_size=1)
    try:
        engine = Engine()
        for n in log.recorder.select_notifications(start=None, limit=10_000_000):
            engine.apply(log.mapper.to_domain_event(n), n.id)
        return [c.change_id for c in engine.drain().changes]
    finally:
        log.close()


async def test_sigkill_mid_stream_loses_and_doubles_nothing(
    database_url: str, nats_server: NatsForTests, tmp_path: Path
) -> None:
    streams = unique_streams()
    env = {
        "DATABASE_URL": database_url,
        "NATS_URL": nats_server.url,
        "PROJECTOR_TICK_INTERVAL_S": "0",
        "PROJECTOR_BATCH_SIZE": "300",
        "CHANGES_STREAM": streams.stream,
        "CHANGES_SUBJECT_PREFIX": streams.subject_prefix,
        "COHORTFLOW_API_KEYS": "app:key",
        "PROJECTOR_METRICS_PORT": "0",
    }
    stop, done = threading.Event(), threading.Event()
    writer = threading.Thread(target=write_history, args=(database_url, stop, done))
    writer.start()
    services: list[ServiceProcess] = []
    try:
        kills = 0
        for _ in range(3):  # run, kill -9, run again ... while the history is being written
            port = free_port()
            service = ServiceProcess(
                "services.projector", {**env, "PROJECTOR_LISTEN": f"127.0.0.1:{port}"}, tmp_path
            )
            services.append(service)
            service.wait_healthy(f"127.0.0.1:{port}")
            await asyncio.sleep(random.uniform(0.5, 1.5))
            service.kill()
            kills += not done.is_set()
        writer.join()
        port = free_port()
        service = ServiceProcess(
            "services.projector", {**env, "PROJECTOR_LISTEN": f"127.0.0.1:{port}"}, tmp_path
        )
        services.append(service)
        service.wait_healthy(f"127.0.0.1:{port}")
        expected = expected_changes(database_url)
        assert len(expected) > 500
        received = await read_all(nats_server.url, streams, expect=len(expected), within=120)
        await asyncio.sleep(1)  # anything extra would have arrived by now
        received = await read_all(nats_server.url, streams, expect=len(expected), within=5)
        service.terminate()
        ids = [r.msg_id for r in received]
        assert len(ids) == len(set(ids)), "a change was published twice"
        assert set(ids) == set(expected), "changes missing or unexpected"
        for user in {r.header.user_id for r in received}:
            seqs = [r.header.user_sequence for r in received if r.header.user_id == user]
            assert seqs == sorted(seqs), f"changes of {user} out of order"
        assert kills >= 1, "no kill happened while the history was being written"
    finally:
        for leftover in services:
            leftover.kill()
        stop.set()
        writer.join()
        await delete_stream(nats_server.url, streams)
