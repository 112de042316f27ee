"""Ingest with its HTTP tracking API, in this process, over a real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.common.grpc.auth import ApiKeys
from services.ingest.bootstrap import IngestApp, start_ingest
from services.ingest.config import IngestSettings
from tests.support.segment_http import basic

KEYS = ApiKeys([("shop", "key-shop"), ("news", "key-news")])


@pytest.fixture
async def ingest(database_url: str) -> AsyncIterator[IngestApp]:
    settings = IngestSettings(
        DATABASE_URL=database_url,
        INGEST_LISTEN="127.0.0.1:0",
        INGEST_HTTP_LISTEN="127.0.0.1:0",
        INGEST_DB_POOL_SIZE=2,
    )
    app = await start_ingest(settings, KEYS)
    yield app
    await app.stop(1)


@pytest.fixture
async def http(ingest: IngestApp) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the HTTP API (no auth of its own)."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ingest.http_port}") as client:
        yield client


@pytest.fixture
def shop() -> dict[str, str]:
    """Headers of app "shop": its write key, a JSON body."""
    return {"Authorization": basic("key-shop"), "Content-Type": "application/json"}


@pytest.fixture
def news() -> dict[str, str]:
    return {"Authorization": basic("key-news"), "Content-Type": "application/json"}
