"""The HTTP tracking API of the ingest process: workers share its port, SIGTERM drains it."""

from __future__ import annotations

import asyncio
import threading
import urllib.request
from pathlib import Path

import httpx
import pytest

from tests.support.eventlog import stored_rows
from tests.support.processes import ServiceProcess, ingest_env
from tests.support.segment_http import basic, track
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e
HEADERS = {"Authorization": basic("key-shop"), "Content-Type": "application/json"}


def batch_of(size: int, user: str) -> dict[str, object]:
    return {"batch": [{"type": "track", **track(user=user)} for _ in range(size)]}


async def serving(client: httpx.AsyncClient) -> bool:
    try:
        return (await client.get("/healthz")).status_code == 200
    except httpx.TransportError:
        return False


async def test_workers_share_the_http_port_and_count_its_calls(
    database_url: str, tmp_path: Path
) -> None:
    env, address, metrics_port = ingest_env(database_url, "shop:key-shop")
    env["INGEST_WORKERS"] = "2"
    service = ServiceProcess("services.ingest", env, tmp_path)
    base = f"http://{env['INGEST_HTTP_LISTEN']}"
    try:
        service.wait_healthy(address)
        # Separate clients: separate connections, spread over the workers by the kernel.
        clients = [httpx.AsyncClient(base_url=base, headers=HEADERS) for _ in range(8)]
        await eventually(lambda: serving(clients[0]), "the HTTP API of the workers")
        answers = await asyncio.gather(
            *(c.post("/v1/batch", json=batch_of(25, f"u{i}")) for i, c in enumerate(clients))
        )
        for client in clients:
            await client.aclose()
        assert [a.status_code for a in answers] == [200] * 8
        assert len(stored_rows(database_url)) == 200
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url).read().decode())
        # Counted by whichever worker served them, summed by the supervisor.
        assert 'cohortflow_ingest_http_calls_total{outcome="accepted",type="track"} 200.0' in body
        assert 'cohortflow_ingest_http_requests_total{code="200",path="/v1/batch"} 8.0' in body
    finally:
        assert service.terminate() == 0
    assert "2 workers" in service.output()


async def test_sigterm_drains_the_http_api_and_answers_what_is_in_flight(
    database_url: str, tmp_path: Path
) -> None:
    env, address, _ = ingest_env(database_url, "shop:key-shop")
    env["SHUTDOWN_DRAIN_S"] = "5"
    service = ServiceProcess("services.ingest", env, tmp_path)
    service.wait_healthy(address)
    base = f"http://{env['INGEST_HTTP_LISTEN']}"
    async with httpx.AsyncClient(base_url=base, headers=HEADERS, timeout=60) as client:
        await eventually(lambda: serving(client), "the HTTP API")
        calls = [
            asyncio.ensure_future(client.post("/v1/batch", json=batch_of(500, f"u{b}")))
            for b in range(10)
        ]
        await asyncio.sleep(0.05)  # calls are in flight now
        stopped = threading.Thread(target=service.terminate)
        stopped.start()
        health = await eventually(
            lambda: _draining(client), "/healthz to answer 503 while draining"
        )
        answers = await asyncio.gather(*calls)
        await asyncio.to_thread(stopped.join)
    assert health.json() == {"status": "draining"}
    assert [a.status_code for a in answers] == [200] * 10
    assert len(stored_rows(database_url)) == 5000
    assert service.process.returncode == 0


async def _draining(client: httpx.AsyncClient) -> httpx.Response | None:
    answer = await client.get("/healthz")
    return answer if answer.status_code == 503 else None
