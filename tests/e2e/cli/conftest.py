"""The `cohortflow` executable against ingest and the projector running as processes.

One database, ingest and projector serve the whole package; tests use ids of their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from services.devstack.embedded import free_port
from services.migrate import migrate
from tests.support.changes import delete_stream, unique_streams
from tests.support.cli import KEY, Suite
from tests.support.infra import NatsForTests, PostgresForTests
from tests.support.processes import ServiceProcess, ingest_env


@pytest.fixture(scope="package")
def suite(
    postgres: PostgresForTests, nats_server: NatsForTests, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Suite]:
    """A migrated database, ingest and the projector (with its own change stream)."""
    logs = tmp_path_factory.mktemp("cli-logs")
    url = postgres.create_database()
    migrate(url)
    env, ingest_address, _ = ingest_env(url, f"cli:{KEY}")
    ingest = ServiceProcess("services.ingest", {**env, "INGEST_METRICS_PORT": "0"}, logs)
    streams = unique_streams()
    projector_address = f"127.0.0.1:{free_port()}"
    projector = ServiceProcess(
        "services.projector",
        {
            "DATABASE_URL": url,
            "NATS_URL": nats_server.url,
            "PROJECTOR_LISTEN": projector_address,
            "PROJECTOR_METRICS_PORT": "0",
            "CHANGES_STREAM": streams.stream,
            "CHANGES_SUBJECT_PREFIX": streams.subject_prefix,
            "COHORTFLOW_API_KEYS": f"cli:{KEY}",
        },
        logs,
    )
    try:
        ingest.wait_healthy(ingest_address)
        projector.wait_healthy(projector_address)
        yield Suite(
            url,
            ingest_address,
            projector_address,
            tmp_path_factory.mktemp("cli-work"),
            nats_server.url,
            streams.stream,
            streams.subject_prefix,
        )
    finally:
        ingest.kill()
        projector.kill()
        postgres.drop_database(url)
        asyncio.run(delete_stream(nats_server.url, streams))
