"""Fixtures shared by every test level."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.migrate import migrate
from tests.support.infra import NatsForTests, PostgresForTests
from tests.support.receivers import HttpReceiver, SmtpReceiver


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresForTests]:
    server = PostgresForTests(tmp_path_factory.mktemp("pg"))
    yield server
    server.close()


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsForTests]:
    server = NatsForTests(tmp_path_factory.mktemp("nats"))
    yield server
    server.close()


@pytest.fixture
def database_url(postgres: PostgresForTests) -> Iterator[str]:
    """A fresh, migrated database of this test's own."""
    url = postgres.create_database()
    migrate(url)
    yield url
    postgres.drop_database(url)


@pytest.fixture
def webhook() -> Iterator[HttpReceiver]:
    """A local HTTP receiver (webhook, push and SMS providers), honouring idempotency keys."""
    receiver = HttpReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    """A local SMTP server (aiosmtpd) that keeps every message."""
    receiver = SmtpReceiver()
    yield receiver
    receiver.close()
