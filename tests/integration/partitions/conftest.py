"""A deployment of P = 4 partitions in a database of its own, and its log."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.eventlog.partitioned import PartitionedLog, open_partitioned_log
from services.migrate import migrate
from tests.support.infra import PostgresForTests

P = 4


@pytest.fixture
def partitioned(postgres: PostgresForTests) -> Iterator[tuple[str, PartitionedLog]]:
    """(home database URL, the log of its P partitions)."""
    url = postgres.create_database()
    log = open_partitioned_log(migrate(url, partitions=P), pool_size=2)
    yield url, log
    log.close()
    postgres.drop_database(url)
