"""Limits on what a segment may cost the shared PostgreSQL, against a real one.

A definition beyond the size limits is refused before anything is stored. History queries
run within a statement timeout, stop when their caller goes (a cancelled or expired
PreviewSegment, a killed process), and a build that runs out of time is marked failed with
its reason instead of being retried. Slow queries are made by holding a lock on the table
they read, so nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import psycopg
import pytest
from cohortflow.segments.v1 import segments_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from services.common.grpc.errors import bad_request_of
from services.common.segment_wire import condition_from_dict
from services.projector import schema
from services.projector.adapters.builds import SegmentBuilder
from tests.support.ingest import auth
from tests.support.logevents import MINUTE, T0, tick, track
from tests.support.processes import REPO
from tests.support.projector import in_process_projector
from tests.support.segment_calls import append, until

CARTS = {"events": {"name": "Added to Cart", "op": ">=", "value": 1}}
PREVIEW_SQL = "WITH draft AS MATERIALIZED%"


@contextlib.asynccontextmanager
async def projector(database_url: str, nats_url: str, timeout_s: float) -> AsyncIterator[tuple]:
    """The projector in this process with both timeouts at `timeout_s`, and some history."""
    async with in_process_projector(
        database_url,
        nats_url,
        PROJECTOR_QUERY_TIMEOUT_S=timeout_s,
        PROJECTOR_BUILD_STATEMENT_TIMEOUT_S=timeout_s,
    ) as running:
        app, log, stub = running.app, running.log, running.segments
        position = append(
            log, tick(T0), *(track(u, T0 + MINUTE, "Added to Cart") for u in ("u1", "u2"))
        )
        # Caught up with the history, so later calls need not wait for the projector.
        await stub.PreviewSegment(preview_request(position), metadata=auth("key-app"))
        yield app, log, stub, position


@pytest.fixture
async def env(database_url: str, nats_server: Any) -> AsyncIterator[tuple]:
    """Timeouts of 1 s."""
    async with projector(database_url, nats_server.url, 1) as env:
        yield env


@pytest.fixture
async def patient(database_url: str, nats_server: Any) -> AsyncIterator[tuple]:
    """Timeouts far beyond the tests' waits: only a cancel can stop a query in time."""
    async with projector(database_url, nats_server.url, 3600) as env:
        yield env


def draft(condition: dict[str, Any], segment_id: str = "carts") -> segments_pb2.Segment:
    return segments_pb2.Segment(segment_id=segment_id, condition=condition_from_dict(condition))


def preview_request(min_position: int = 0) -> segments_pb2.PreviewSegmentRequest:
    return segments_pb2.PreviewSegmentRequest(segment=draft(CARTS), min_position=min_position)


@contextlib.contextmanager
def locked(database_url: str, table: str) -> Iterator[None]:
    """Hold an exclusive lock on `table`: a query that reads it waits (runs) until released."""
    with psycopg.connect(database_url) as conn:
        conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        yield
        conn.rollback()


def running(database_url: str, like: str) -> int:
    """Statements of this database now running whose text starts like `like`."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND state = 'active' AND query LIKE %s AND pid <> pg_backend_pid()",
            (like,),
        ).fetchone()
        return int(row[0]) if row else 0


async def until_running(database_url: str, like: str, count: int) -> None:
    async def check() -> bool:
        return running(database_url, like) == count

    await until(check)


def reason_of(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    return ""


async def test_a_100000_value_in_list_is_refused_and_nothing_is_stored(
    env: tuple, database_url: str
) -> None:
    _app, _log, stub, _position = env
    huge = {"trait": {"key": "plan", "op": "in", "values": [f"v{i}" for i in range(100_000)]}}
    calls = [
        stub.CreateSegment(
            segments_pb2.CreateSegmentRequest(segment_id="huge", segment=draft(huge, "huge")),
            metadata=auth("key-app"),
        ),
        stub.PreviewSegment(
            segments_pb2.PreviewSegmentRequest(segment=draft(huge, "huge")),
            metadata=auth("key-app"),
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad_request_of(caught.value) == [
            ("segment.condition.trait.values", "has 100000 items; at most 1000")
        ]
    with psycopg.connect(database_url) as conn:
        stored = conn.execute(
            "SELECT count(*) FROM cohortflow_events WHERE topic LIKE '%segments%'"
        ).fetchone()
    assert stored == (0,)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetSegment(
            segments_pb2.GetSegmentRequest(segment_id="huge"), metadata=auth("key-app")
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def nested(depth: int) -> dict[str, Any]:
    condition: dict[str, Any] = {"lifecycle": ["new"]}
    for _ in range(depth):
        condition = {"all": [condition]}
    return condition


async def test_every_limit_is_an_invalid_argument_naming_the_field(env: tuple) -> None:
    _app, _log, stub, _position = env
    long_where = [{"property": f"p{i}", "op": "=", "value": "v" * 900} for i in range(100)]
    cases = [
        (nested(13), "segment.condition" + ".all[0]" * 13, "conditions nest at most 12 deep"),
        ({"any": [{"lifecycle": ["new"]}] * 200}, "segment.condition.any[199]", "at most 200"),
        (
            {"trait": {"key": "k" * 1_025, "op": "exists"}},
            "segment.condition.trait.key",
            "is 1025 characters long; at most 1024",
        ),
        (
            {"trait": {"key": "plan", "op": "=", "value": "a\x00b"}},
            # Refused at the edge, before the definition is read (services/common/text.py).
            "segment.condition.trait.value.string_value",
            "contains U+0000 (NUL) at character 1",
        ),
        (
            {"events": {"name": "x", "where": long_where}},
            "segment.condition",
            "is more than 65536 bytes as JSON",
        ),
        (
            {"geo": {"countries": ["DE"] * 1_001}},
            "segment.condition.geo.countries",
            "has 1001 items; at most 1000",
        ),
    ]
    for condition, field, description in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateSegment(
                segments_pb2.CreateSegmentRequest(
                    segment_id="big", segment=draft(condition, "big")
                ),
                metadata=auth("key-app"),
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        ((got_field, got_description),) = bad_request_of(caught.value)
        assert got_field == field
        assert description in got_description
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetSegment(
            segments_pb2.GetSegmentRequest(segment_id="big"), metadata=auth("key-app")
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_cancelled_preview_stops_its_query_in_postgresql(
    patient: tuple, database_url: str
) -> None:
    _app, _log, stub, _position = patient
    with locked(database_url, schema.FACTS_TABLE):
        call = stub.PreviewSegment(preview_request(), metadata=auth("key-app"))
        await until_running(database_url, PREVIEW_SQL, 1)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await until_running(database_url, PREVIEW_SQL, 0)


async def test_a_preview_past_its_deadline_stops_its_query_in_postgresql(
    patient: tuple, database_url: str
) -> None:
    _app, _log, stub, _position = patient
    # What is left of the deadline is the query's statement timeout; and when the deadline
    # passes, the call is cancelled, which cancels the query. Either one stops it.
    with locked(database_url, schema.FACTS_TABLE):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.PreviewSegment(preview_request(), metadata=auth("key-app"), timeout=0.5)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await until_running(database_url, PREVIEW_SQL, 0)


async def test_a_preview_past_the_statement_timeout_is_resource_exhausted(
    env: tuple, database_url: str
) -> None:
    _app, _log, stub, _position = env
    with locked(database_url, schema.FACTS_TABLE):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.PreviewSegment(preview_request(), metadata=auth("key-app"))
        assert running(database_url, PREVIEW_SQL) == 0
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "ran longer than 1 s (PROJECTOR_QUERY_TIMEOUT_S)" in (caught.value.details() or "")
    assert reason_of(caught.value) == "QUERY_TIMEOUT"


async def test_time_travel_queries_have_the_statement_timeout_too(
    env: tuple, database_url: str
) -> None:
    _app, _log, stub, _position = env
    reply = await stub.CreateSegment(
        segments_pb2.CreateSegmentRequest(segment_id="carts", segment=draft(CARTS)),
        metadata=auth("key-app"),
    )
    await stub.GetSegment(
        segments_pb2.GetSegmentRequest(
            segment_id="carts", min_position=reply.segment.defined_position
        ),
        metadata=auth("key-app"),
    )
    as_of = segments_pb2.ListSegmentMembersRequest(segment_id="carts")
    as_of.as_of_time.FromMicroseconds(T0 + 2 * MINUTE)
    check = segments_pb2.CheckMembershipRequest(segment_id="carts", user_id="u1")
    check.as_of_time.FromMicroseconds(T0 + 2 * MINUTE)
    history = segments_pb2.ListMembershipHistoryRequest(user_id="u1")
    with locked(database_url, schema.CHANGES_TABLE):
        for call in (
            stub.ListSegmentMembers(as_of, metadata=auth("key-app")),
            stub.CheckMembership(check, metadata=auth("key-app")),
            stub.ListMembershipHistory(history, metadata=auth("key-app")),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert reason_of(caught.value) == "QUERY_TIMEOUT"


async def test_a_build_past_its_statement_timeout_fails_with_its_reason_and_is_not_retried(
    env: tuple,
    database_url: str,
) -> None:
    app, log, stub, _position = env
    with locked(database_url, schema.SEGMENT_BUILDS_TABLE):
        reply = await stub.CreateSegment(
            segments_pb2.CreateSegmentRequest(segment_id="carts", segment=draft(CARTS)),
            metadata=auth("key-app"),
        )

        defined = reply.segment.defined_position

        async def failed() -> bool:
            got = await stub.GetSegment(
                segments_pb2.GetSegmentRequest(segment_id="carts", min_position=defined),
                metadata=auth("key-app"),
            )
            return got.segment.build.status == "failed"

        await until(failed)
    got = await stub.GetSegment(
        segments_pb2.GetSegmentRequest(segment_id="carts"), metadata=auth("key-app")
    )
    assert got.segment.state == segments_pb2.Segment.STATE_BUILDING
    assert "ran longer than 1 s (PROJECTOR_BUILD_STATEMENT_TIMEOUT_S)" in got.segment.build.error
    assert got.segment.build.HasField("finish_time")
    # Not picked up again: the builder's queue no longer holds it.
    builder = SegmentBuilder(app.store, log, lambda: reply.segment.defined_position)
    assert builder.pending() == []
    # A new version (here the same definition, now that nothing blocks it) is built.
    await stub.UpdateSegment(
        segments_pb2.UpdateSegmentRequest(segment=draft(CARTS)), metadata=auth("key-app")
    )

    async def active() -> bool:
        got = await stub.GetSegment(
            segments_pb2.GetSegmentRequest(segment_id="carts"), metadata=auth("key-app")
        )
        return got.segment.state == segments_pb2.Segment.STATE_ACTIVE

    await until(active)


KILLED_CLIENT = textwrap.dedent(
    """
    import sys
    from services.common.jetstream import ChangeSubjects
    from services.eventlog.store import open_event_log
    from services.projector.adapters.builds import SegmentBuilder
    from services.projector.adapters.history_queries import HistoryQueries
    from services.projector.adapters.store import open_store
    from services.common.segments.definition import parse

    url, what = sys.argv[1], sys.argv[2]
    store = open_store(url, ChangeSubjects("cohortflow.changes"))
    carts = {"events": {"name": "Added to Cart", "op": ">=", "value": 1}}
    if what == "preview":
        HistoryQueries(store, timeout_s=3600).preview("app", "carts", parse(carts), 10)
    else:
        builder = SegmentBuilder(store, open_event_log(url), lambda: 0, statement_timeout_s=3600)
        builder.build("app", "killed", 1, 0, carts)
    """
)


@pytest.mark.parametrize(
    ("what", "table", "like"),
    [
        ("preview", schema.FACTS_TABLE, PREVIEW_SQL),
        ("build", schema.SEGMENT_BUILDS_TABLE, f"DELETE FROM {schema.SEGMENT_BUILDS_TABLE}%"),
    ],
)
async def test_a_killed_process_leaves_no_query_running(
    database_url: str, what: str, table: str, like: str
) -> None:
    with locked(database_url, table):
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            KILLED_CLIENT,
            database_url,
            what,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        try:
            await until_running(database_url, like, 1)
        finally:
            child.send_signal(signal.SIGKILL)
            await child.wait()
        # The lock is still held: only the connection check can end the query now.
        await until_running(database_url, like, 0)
