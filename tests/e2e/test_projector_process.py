"""The projector as a process: its lag metric is true from the first scrape.

Issue 16 saw the lag read 0 for about a second after a start 6,564 events behind: the
gauge was set only once the projection had loaded every user's state. Here loading is
held up (the profiles table locked) for as long as the test likes, and the very first
answer of the metrics endpoint must already say how far behind the read models are.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import psycopg
from prometheus_client.parser import text_string_to_metric_families

from services.devstack.embedded import free_port
from services.eventlog.store import open_event_log
from services.projector.schema import PROFILES_TABLE
from tests.support.changes import unique_streams
from tests.support.logevents import T0, track
from tests.support.processes import ServiceProcess
from tests.support.projector import append

BEHIND = 6_564


def _gauges(text: str) -> dict[str, float]:
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("cohortflow_projector_")
    }


def _first_scrape(url: str, process: ServiceProcess, within: float = 60.0) -> dict[str, float]:
    """The first answer the metrics endpoint gives (polled every 20 ms from the start)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        assert process.process.poll() is None, process.output()
        try:
            return _gauges(httpx.get(url, timeout=1).text)
        except httpx.TransportError:
            time.sleep(0.02)
    raise AssertionError(f"no metrics within {within}s:\n{process.output()}")


def test_lag_is_true_from_the_first_scrape_while_state_is_still_loading(
    database_url: str, nats_server, tmp_path: Path
) -> None:
    log = open_event_log(database_url)
    try:
        for chunk in range(0, BEHIND, 1_000):
            count = min(1_000, BEHIND - chunk)
            append(log, *(track(f"u{(chunk + i) % 900}", T0 + chunk + i) for i in range(count)))
        head = log.head_position()
    finally:
        log.close()
    metrics_port, port = free_port(), free_port()
    streams = unique_streams()
    env = {
        "DATABASE_URL": database_url,
        "NATS_URL": nats_server.url,
        "PROJECTOR_LISTEN": f"127.0.0.1:{port}",
        "PROJECTOR_METRICS_PORT": str(metrics_port),
        "CHANGES_STREAM": streams.stream,
        "CHANGES_SUBJECT_PREFIX": streams.subject_prefix,
    }
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with psycopg.connect(database_url) as holder:
        # The projection cannot load users' state until this transaction ends.
        holder.execute(f"LOCK TABLE {PROFILES_TABLE} IN ACCESS EXCLUSIVE MODE")
        process = ServiceProcess("services.projector", env, tmp_path)
        try:
            first = _first_scrape(url, process)
            assert first["cohortflow_projector_log_head"] == head
            assert first["cohortflow_projector_lag_events"] == head == BEHIND
            process.wait_healthy(f"127.0.0.1:{port}")  # it serves reads meanwhile
            assert _gauges(httpx.get(url).text)["cohortflow_projector_lag_events"] == BEHIND
            holder.rollback()  # loading may go on
            deadline = time.monotonic() + 120
            while _gauges(httpx.get(url).text)["cohortflow_projector_lag_events"] > 0:
                assert time.monotonic() < deadline, process.output()
                time.sleep(0.2)
        finally:
            process.terminate()
