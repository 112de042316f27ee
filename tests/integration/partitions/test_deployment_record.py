"""The deployment record on an existing database: one created before partitions keeps one."""

from __future__ import annotations

import psycopg
import pytest

from services.eventlog.deployment_store import DEPLOYMENT_TABLE, DeploymentMismatch
from services.eventlog.store import open_event_log
from services.migrate import migrate
from tests.support.infra import PostgresForTests
from tests.support.logevents import T0, track
from tests.support.projector import append


def test_a_database_with_events_from_before_partitions_cannot_be_given_more(
    postgres: PostgresForTests,
) -> None:
    url = postgres.create_database()
    try:
        migrate(url)
        log = open_event_log(url)
        try:
            append(log, track("u1", T0))
        finally:
            log.close()
        # As it was before partitions: no record, events in the one log.
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE {DEPLOYMENT_TABLE}")
        with pytest.raises(DeploymentMismatch, match="it has 1 partition; set"):
            migrate(url, partitions=16)
        assert migrate(url).partitions == 1
        with pytest.raises(DeploymentMismatch, match="created with 1 partitions"):
            migrate(url, partitions=16)
    finally:
        postgres.drop_database(url)


def test_a_new_database_takes_the_partitions_it_is_given(postgres: PostgresForTests) -> None:
    url = postgres.create_database()
    try:
        assert migrate(url, partitions=16).partitions == 16
        assert migrate(url).partitions == 16
    finally:
        postgres.drop_database(url)
