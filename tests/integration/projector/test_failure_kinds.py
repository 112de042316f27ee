"""Which real PostgreSQL failures may be an event's fault, and which are only transient.

The errors come from a real server through the projector's own datastore (so wrapped as
eventsourcing wraps them); what a bisection may quarantine is `refused`, what is retried
without ever quarantining anything is everything else.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from eventsourcing.persistence import PersistenceError

from services.common.jetstream import ChangeSubjects
from services.projector.adapters.poison import UnencodableRows, condition, refused, transient
from services.projector.adapters.store import ProjectorStore, open_store

_DATABASE_ERRORS = (PersistenceError, psycopg.Error)


@pytest.fixture
def store(database_url: str) -> Iterator[ProjectorStore]:
    opened = open_store(database_url, ChangeSubjects("test"), pool_size=2)
    yield opened
    opened.datastore.close()


def _failure(store: ProjectorStore, statement: str, *params: object) -> BaseException:
    with (
        pytest.raises(_DATABASE_ERRORS) as caught,
        store.datastore.transaction(commit=True) as curs,
    ):
        curs.execute(statement, params or None)
    return caught.value


@pytest.mark.parametrize(
    ("sqlstate", "is_refused", "is_transient"),
    [
        ("22021", True, False),  # character_not_in_repertoire (a NUL in text)
        ("22P05", True, False),  # untranslatable_character (a NUL in jsonb)
        ("22003", True, False),  # numeric_value_out_of_range
        ("54000", True, False),  # program_limit_exceeded (an index row too large)
        ("40001", False, True),  # serialization_failure
        ("40P01", False, True),  # deadlock_detected
        ("55P03", False, True),  # lock_not_available (lock_timeout)
        ("57014", False, True),  # query_canceled (statement_timeout)
        ("57P01", False, True),  # admin_shutdown
        ("53300", False, True),  # too_many_connections
        ("53100", False, True),  # disk_full
        ("42P01", False, False),  # undefined_table: a schema problem, no event's
        ("23505", False, False),  # unique_violation (a replayed position)
        ("XX000", False, False),  # internal_error
    ],
)
def test_each_sqlstate_is_classified(
    store: ProjectorStore, sqlstate: str, is_refused: bool, is_transient: bool
) -> None:
    error = _failure(store, f"DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '{sqlstate}'; END $$")
    assert (refused(error), transient(error)) == (is_refused, is_transient)
    assert sqlstate in condition(error)


def test_values_postgresql_refuses_are_refused(store: ProjectorStore) -> None:
    for statement, value in [
        ("SELECT %s::text", "a\x00b"),  # refused by the client before sending
        ("SELECT %s::jsonb", '{"a": "\\u0000"}'),
        ("SELECT %s::int8", "9223372036854775808"),
        ("SELECT %s::int4", 2**40),
    ]:
        error = _failure(store, statement, value)
        assert refused(error) and not transient(error), statement


def test_a_terminated_connection_is_transient(store: ProjectorStore, database_url: str) -> None:
    with store.datastore.transaction(commit=True) as curs:
        curs.execute("SELECT pg_backend_pid() AS pid")
        row = curs.fetchone()
        assert row
        with psycopg.connect(database_url, autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s)", (row["pid"],))
        with pytest.raises(_DATABASE_ERRORS) as caught:
            curs.execute("SELECT 1")
    assert transient(caught.value) and not refused(caught.value)


def test_errors_outside_the_database() -> None:
    unencodable = UnencodableRows("rows")
    unencodable.__cause__ = TypeError("Integer exceeds 64-bit range")
    assert refused(unencodable) and not transient(unencodable)
    assert condition(unencodable) == "TypeError while building its rows"
    assert refused(OverflowError("int too big to convert"))
    assert transient(ConnectionRefusedError()) and transient(TimeoutError())
    assert transient(MemoryError())
    assert not refused(KeyError("x")) and not transient(KeyError("x"))
