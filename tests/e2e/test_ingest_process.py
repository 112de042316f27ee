"""The ingest service as a process: its API, metrics, and a graceful stop on SIGTERM."""

from __future__ import annotations

import asyncio
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.ingest.bootstrap import SERVICE_NAME
from tests.support.eventlog import stored_rows
from tests.support.ingest import ACCEPTED, DUPLICATE, REJECTED, IngestClient, event
from tests.support.processes import ServiceProcess, ingest_env

pytestmark = pytest.mark.e2e


@pytest.fixture
def ingest(database_url: str, tmp_path: Path) -> Iterator[tuple[ServiceProcess, str, int]]:
    env, address, metrics = ingest_env(database_url, "shop:key-shop")
    service = ServiceProcess("services.ingest", env, tmp_path)
    service.wait_healthy(address)
    yield service, address, metrics
    service.kill()


async def test_track_batch_and_metrics_through_the_process(
    ingest: tuple[ServiceProcess, str, int], database_url: str
) -> None:
    _, address, metrics_port = ingest
    async with grpc.aio.insecure_channel(address) as channel:
        client = IngestClient(channel, "key-shop")
        events = [event(user_id=f"u{i}") for i in range(500)]
        results = await client.track_batch([*events, event("$bogus")])
        assert [r.status for r in results].count(ACCEPTED) == 500
        assert results[-1].status == REJECTED
        again = await client.track(events[0])
        assert again.status == DUPLICATE and again.position == results[0].position
    assert len(stored_rows(database_url)) == 500
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(url).read().decode())
    assert 'cohortflow_ingest_events_total{kind="track",outcome="accepted"} 500.0' in body
    assert 'cohortflow_ingest_events_total{kind="track",outcome="rejected"} 1.0' in body
    assert 'cohortflow_ingest_events_total{kind="track",outcome="duplicate"} 1.0' in body
    assert "cohortflow_ingest_append_seconds_bucket" in body
    assert "cohortflow_ingest_append_batch_events_bucket" in body


def test_reflection_lists_the_service(ingest: tuple[ServiceProcess, str, int]) -> None:
    _, address, _ = ingest
    with grpc.insecure_channel(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (reply,) = list(stub.ServerReflectionInfo(iter([request])))
        names = {s.name for s in reply.list_services_response.service}
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names


async def test_sigterm_lets_in_flight_calls_finish(database_url: str, tmp_path: Path) -> None:
    env, address, _ = ingest_env(database_url, "shop:key-shop")
    # Calls that reach the server within the drain period after SIGTERM are served
    # normally: a long one keeps a slow (loaded) client from racing the stop.
    env["SHUTDOWN_DRAIN_S"] = "5"
    service = ServiceProcess("services.ingest", env, tmp_path)
    service.wait_healthy(address)
    async with grpc.aio.insecure_channel(address) as channel:
        client = IngestClient(channel, "key-shop")
        batches = [[event(user_id=f"u{b}-{i}") for i in range(1000)] for b in range(12)]
        calls = [asyncio.ensure_future(client.track_batch(batch)) for batch in batches]
        await asyncio.sleep(0.05)  # calls are in flight now
        stopped = threading.Thread(target=service.terminate)
        stopped.start()
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        stopped.join()
    finished = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert refused == []
    assert all(r.status == ACCEPTED for batch in finished for r in batch)
    assert len(stored_rows(database_url)) == 12_000
    assert service.process.returncode == 0
    assert '"event": "stopped"' in service.output()


async def test_workers_share_the_port_and_their_metrics(database_url: str, tmp_path: Path) -> None:
    env, address, metrics_port = ingest_env(database_url, "shop:key-shop")
    env["INGEST_WORKERS"] = "2"
    service = ServiceProcess("services.ingest", env, tmp_path)
    try:
        service.wait_healthy(address)
        channels = [
            grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(8)
        ]
        results = await asyncio.gather(
            *(
                IngestClient(ch, "key-shop").track_batch(
                    [event(user_id=f"u{i}") for _ in range(25)]
                )
                for i, ch in enumerate(channels)
            )
        )
        for ch in channels:
            await ch.close()
        assert all(r.status == ACCEPTED for batch in results for r in batch)
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url).read().decode())
        # Counters from both workers are summed by the supervisor.
        assert 'cohortflow_ingest_events_total{kind="track",outcome="accepted"} 200.0' in body
        # Readiness gauges are the worst worker's (one series, not one per process).
        assert 'cohortflow_health_check_up{check="database"} 1.0' in body
        assert len(stored_rows(database_url)) == 200
    finally:
        assert service.terminate() == 0
    assert "2 workers" in service.output()
