"""The console's /healthz tells the truth about what its pages need: its database, the
projector's reads and the campaign API (real services in this process); /livez only
says the process answers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from services.campaign.bootstrap import CampaignApp, start_campaign
from services.campaign.config import CampaignSettings
from services.common.grpc.auth import ApiKeys
from services.console.bootstrap import Console, build_console
from services.console.config import ConsoleSettings
from services.projector.bootstrap import ProjectorApp, start_projector
from tests.support.changes import delete_stream, unique_streams
from tests.support.infra import NatsForTests, PostgresForTests
from tests.support.outages import database_refusing
from tests.support.projector import projector_settings
from tests.support.waiting import eventually

FAST = {"HEALTH_INTERVAL_S": 0.2, "HEALTH_FAILURES": 2, "HEALTH_TIMEOUT_S": 2}


@dataclass
class Suite:
    projector: ProjectorApp
    campaign: CampaignApp
    console: Console
    client: httpx.AsyncClient


@pytest.fixture
async def suite(database_url: str, nats_server: NatsForTests) -> AsyncIterator[Suite]:
    streams = unique_streams()
    projector = await start_projector(
        projector_settings(database_url, nats_server.url), ApiKeys([]), streams=streams
    )
    campaign = await start_campaign(
        CampaignSettings(
            DATABASE_URL=database_url,
            NATS_URL=nats_server.url,
            CAMPAIGN_LISTEN="127.0.0.1:0",
            CAMPAIGN_CONSUMER="console-health",
            CAMPAIGN_SEGMENTS_ADDRESS="",
        ),
        ApiKeys([]),
        stream=streams,
        background=False,
    )
    console = build_console(
        ConsoleSettings(
            DATABASE_URL=database_url,
            CONSOLE_PROJECTOR_ADDRESS=f"127.0.0.1:{projector.port}",
            CONSOLE_CAMPAIGN_ADDRESS=f"127.0.0.1:{campaign.port}",
            **FAST,
        ),
        streams=streams,
    )
    console.health.start()
    transport = httpx.ASGITransport(app=console.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://console") as client:
        yield Suite(projector, campaign, console, client)
    await console.close()
    await campaign.stop(0.5)
    await projector.stop(1)
    await delete_stream(nats_server.url, streams)


async def _health(suite: Suite) -> tuple[int, dict[str, Any]]:
    reply = await suite.client.get("/healthz")
    return reply.status_code, reply.json()


def _answer(status: int, **checks: str) -> Any:
    async def now(suite: Suite) -> bool:
        return await _health(suite) == (status, {"status": _word(status), "checks": checks})

    return now


def _word(status: int) -> str:
    return "ok" if status == 200 else "unavailable"


async def test_healthz_names_what_the_console_cannot_reach(
    suite: Suite, database_url: str, postgres: PostgresForTests
) -> None:
    everything = {"database": "ok", "projector": "ok", "campaign": "ok"}
    await eventually(lambda: _answer(200, **everything)(suite), "ready")
    with database_refusing(postgres.server_url, database_url):
        # Its own database, and so the campaign API (which needs it too), fail; the
        # projector's reads fail once it cannot commit or read either.
        async def database_down() -> bool:
            status, body = await _health(suite)
            return status == 503 and body["checks"]["database"] == "failing"

        await eventually(database_down, "503 naming the database")
        assert (await suite.client.get("/livez")).status_code == 200
    await eventually(lambda: _answer(200, **everything)(suite), "ready again")
    await suite.projector.stop(1)
    await eventually(
        lambda: _answer(503, database="ok", projector="failing", campaign="ok")(suite),
        "503 naming the projector alone",
    )
    assert (await suite.client.get("/livez")).text == "ok"
