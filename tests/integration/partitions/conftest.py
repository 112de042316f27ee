"""A deployment of P = 4 partitions in a database of its own, and its log."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.eventlog.partitioned import PartitionedLog
from tests.support.infra import PostgresForTests
from tests.support.partitioned import partitioned_database

P = 4


@pytest.fixture
def partitioned(postgres: PostgresForTests) -> Iterator[tuple[str, PartitionedLog]]:
    """(home database URL, the log of its P partitions)."""
    with partitioned_database(postgres, P) as deployment:
        yield deployment
