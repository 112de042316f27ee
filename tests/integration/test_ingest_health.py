"""Ingest's health follows its database: NOT_SERVING (and its HTTP API's /healthz 503)
while it refuses connections, SERVING again (and storing events again) once it accepts
them."""

from __future__ import annotations

import grpc
import httpx
from grpc_health.v1 import health_pb2

from services.common.grpc.auth import ApiKeys
from services.common.readiness import CHECK_UP
from services.ingest.bootstrap import SERVICE_NAME, IngestApp, start_ingest
from services.ingest.config import IngestSettings
from tests.support.infra import PostgresForTests
from tests.support.ingest import ACCEPTED, IngestClient, event
from tests.support.outages import database_refusing
from tests.support.projector import health_status
from tests.support.waiting import eventually

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def _all(app: IngestApp, status: int) -> bool:
    return all([await health_status(app.port, name) == status for name in ("", SERVICE_NAME)])


async def test_health_follows_the_database(database_url: str, postgres: PostgresForTests) -> None:
    settings = IngestSettings(
        DATABASE_URL=database_url,
        INGEST_LISTEN="127.0.0.1:0",
        INGEST_HTTP_LISTEN="127.0.0.1:0",
        HEALTH_INTERVAL_S=0.2,
        HEALTH_FAILURES=2,
        HEALTH_TIMEOUT_S=2,
    )
    app = await start_ingest(settings, ApiKeys([("shop", "key-shop")]))
    http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.http_port}")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            shop = IngestClient(channel, "key-shop")
            assert (await shop.track(event())).status == ACCEPTED
            assert await _all(app, SERVING)
            assert (await http.get("/healthz")).status_code == 200
            with database_refusing(postgres.server_url, database_url):
                await eventually(lambda: _all(app, NOT_SERVING), "NOT_SERVING")
                assert CHECK_UP.labels("database")._value.get() == 0
                refused = await http.get("/healthz")
                assert refused.status_code == 503
                assert refused.json() == {
                    "status": "unavailable",
                    "checks": {"database": "failing"},
                }
            await eventually(lambda: _all(app, SERVING), "SERVING again")
            assert CHECK_UP.labels("database")._value.get() == 1
            assert (await http.get("/healthz")).json() == {"status": "serving"}
            assert (await shop.track(event())).status == ACCEPTED
    finally:
        await http.aclose()
        await app.stop(1)
