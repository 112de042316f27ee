"""Fixtures of the projector's integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.projector import InProcessProjector, in_process_projector


@pytest.fixture
async def projector(database_url: str, nats_server: Any) -> AsyncIterator[InProcessProjector]:
    """A projector in this process on the test's database (apps "app" and "other", keys
    "key-app" and "key-other"), publishing to streams of its own."""
    async with in_process_projector(database_url, nats_server.url) as running:
        yield running
