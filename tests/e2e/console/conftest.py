"""One suite + console per test module (starting them takes seconds), on a database of its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.migrate import migrate
from tests.support.console import ConsoleStack
from tests.support.infra import NatsForTests, PostgresForTests


@pytest.fixture(scope="module")
def stack(
    postgres: PostgresForTests, nats_server: NatsForTests, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleStack]:
    url = postgres.create_database()
    migrate(url)
    running = ConsoleStack(url, nats_server.url, Path(tmp_path_factory.mktemp("console")))
    try:
        running.start()
        yield running
    finally:
        running.close()
        postgres.drop_database(url)
