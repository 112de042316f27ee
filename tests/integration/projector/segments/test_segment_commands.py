"""Segment commands decide against the log (the write model), not the read model.

SegmentService runs here without a projection: the read models never learn of any
segment, so whatever a command accepts or refuses it decided from the Segment aggregates.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import psycopg
import pytest
from cohortflow.segments.v1 import segments_pb2, segments_pb2_grpc
from psycopg import sql

from services.cli.client import Connection, Target
from services.cli.segment_apply import CREATED, apply_segments
from services.cli.segment_files import SegmentSpec
from services.common.grpc.auth import ApiKeys
from services.common.grpc.errors import bad_request_of
from services.common.grpc.server import Registration, create_server
from services.common.jetstream import ChangeSubjects
from services.common.segment_wire import condition_from_dict
from services.eventlog.store import EventLog, open_event_log
from services.projector.adapters.history_queries import HistoryQueries
from services.projector.adapters.segment_queries import SegmentQueries
from services.projector.adapters.store import open_store
from services.projector.bootstrap import SEGMENT_SERVICE
from services.projector.grpc.segments import SegmentServicer
from services.projector.service_layer.segment_commands import SegmentCommands
from tests.support.infra import PostgresForTests
from tests.support.ingest import auth

KEYS = ApiKeys([("app", "key-app"), ("other", "key-other")])
CARTS = {"events": {"name": "Added to Cart", "op": ">=", "value": 1}}


@dataclass
class Service:
    """SegmentService over a log and a store that no projection ever fills."""

    stub: segments_pb2_grpc.SegmentServiceStub
    address: str
    log: EventLog


async def _never_caught_up(context: grpc.aio.ServicerContext, min_position: int) -> int:
    return 0


@pytest.fixture
async def service(database_url: str) -> AsyncIterator[Service]:
    # A short connect timeout: the outage test waits out the library's retries per call.
    log = open_event_log(database_url, pool_size=4, connect_timeout_s=1)
    store = open_store(database_url, ChangeSubjects("unused"), pool_size=1)
    servicer = SegmentServicer(
        SegmentCommands(log),
        SegmentQueries(store),
        HistoryQueries(store, timeout_s=5),
        _never_caught_up,
    )
    registration = Registration(
        segments_pb2_grpc.add_SegmentServiceServicer_to_server, servicer, SEGMENT_SERVICE
    )
    served = await create_server("127.0.0.1:0", [registration], KEYS)
    address = f"127.0.0.1:{served.port}"
    async with grpc.aio.insecure_channel(address) as channel:
        yield Service(segments_pb2_grpc.SegmentServiceStub(channel), address, log)
    await served.stop(1)
    log.close()
    store.datastore.close()


def _segment(condition: dict[str, Any], segment_id: str = "") -> segments_pb2.Segment:
    return segments_pb2.Segment(segment_id=segment_id, condition=condition_from_dict(condition))


async def _create(stub: Any, segment_id: str, condition: dict[str, Any]) -> segments_pb2.Segment:
    reply = await stub.CreateSegment(
        segments_pb2.CreateSegmentRequest(segment_id=segment_id, segment=_segment(condition)),
        metadata=auth("key-app"),
    )
    return reply.segment


async def _update(stub: Any, segment_id: str, condition: dict[str, Any]) -> segments_pb2.Segment:
    reply = await stub.UpdateSegment(
        segments_pb2.UpdateSegmentRequest(segment=_segment(condition, segment_id)),
        metadata=auth("key-app"),
    )
    return reply.segment


async def test_a_segment_can_reference_one_created_a_moment_before(service: Service) -> None:
    stub = service.stub
    await _create(stub, "carts", CARTS)
    # The read model has not heard of "carts" (no projection runs here) ...
    with pytest.raises(grpc.aio.AioRpcError) as unread:
        await stub.GetSegment(
            segments_pb2.GetSegmentRequest(segment_id="carts"), metadata=auth("key-app")
        )
    assert unread.value.code() == grpc.StatusCode.NOT_FOUND
    # ... yet a segment referring to it is accepted at once, and so is a chain of them.
    loyal = await _create(stub, "loyal-carts", {"all": [{"segment": "carts"}, {"rfm": ["loyal"]}]})
    assert (loyal.version, loyal.defined_position > 0) == (1, True)
    await _create(stub, "loyal-carts-de", {"all": [{"segment": "loyal-carts"}]})


async def test_references_to_missing_or_archived_segments_and_loops_are_refused(
    service: Service,
) -> None:
    stub = service.stub
    await _create(stub, "a", CARTS)
    await _create(stub, "b", {"segment": "a"})
    await _create(stub, "gone", CARTS)
    await stub.ArchiveSegment(
        segments_pb2.ArchiveSegmentRequest(segment_id="gone"), metadata=auth("key-app")
    )
    # Another app's segment of the same id is not this app's.
    await stub.CreateSegment(
        segments_pb2.CreateSegmentRequest(segment_id="theirs", segment=_segment(CARTS)),
        metadata=auth("key-other"),
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _create(stub, "c", {"any": [{"segment": "gone"}, {"segment": "theirs"}]})
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_of(refused.value) == [
        ("segment.condition", "refers to unknown segment 'gone'"),
        ("segment.condition", "refers to unknown segment 'theirs'"),
    ]
    # a -> b -> a would loop.
    with pytest.raises(grpc.aio.AioRpcError) as loop:
        await _update(stub, "a", {"segment": "b"})
    assert bad_request_of(loop.value) == [
        ("segment.condition", "segment references would loop: a -> b -> a")
    ]


async def test_a_restored_version_is_checked_like_a_new_one(service: Service) -> None:
    stub = service.stub
    await _create(stub, "a", CARTS)
    await _create(stub, "b", CARTS)
    await _update(stub, "a", {"segment": "b"})  # a v2 -> b
    await _update(stub, "a", CARTS)  # a v3 refers to nothing
    await _update(stub, "b", {"segment": "a"})  # b v2 -> a
    with pytest.raises(grpc.aio.AioRpcError) as loop:
        await stub.RestoreSegmentVersion(
            segments_pb2.RestoreSegmentVersionRequest(segment_id="a", version=2),
            metadata=auth("key-app"),
        )
    assert bad_request_of(loop.value) == [
        ("segment.condition", "segment references would loop: a -> b -> a")
    ]
    restored = await stub.RestoreSegmentVersion(
        segments_pb2.RestoreSegmentVersionRequest(segment_id="a", version=1),
        metadata=auth("key-app"),
    )
    assert (restored.segment.version, restored.segment.condition) == (4, condition_from_dict(CARTS))
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.RestoreSegmentVersion(
            segments_pb2.RestoreSegmentVersionRequest(segment_id="a", version=9),
            metadata=auth("key-app"),
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_demo_apply_defines_a_chain_of_references_without_waiting(
    service: Service,
) -> None:
    specs = (
        SegmentSpec("carts", "Carts", "", CARTS, frozenset()),
        SegmentSpec("loyal-carts", "", "", {"all": [{"segment": "carts"}]}, frozenset({"carts"})),
    )
    target = Target(ingest="", projector=service.address, campaign="", key="key-app")
    async with Connection(target, "projector") as conn:
        applied = await apply_segments(conn, specs)
    assert [(a.name, a.outcome, a.version) for a in applied] == [
        ("carts", CREATED, 1),
        ("loyal-carts", CREATED, 1),
    ]


@pytest.fixture
def refusing_database(database_url: str, postgres: PostgresForTests) -> Iterator[None]:
    """The test's database refuses every new connection and has lost the open ones."""
    name = sql.Identifier(database_url.rsplit("/", 1)[-1])
    with psycopg.connect(postgres.server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(name))
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (database_url.rsplit("/", 1)[-1],),
        )
        try:
            yield
        finally:
            admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(name))


async def test_a_database_outage_is_unavailable_not_a_missing_segment(
    service: Service, refusing_database: None
) -> None:
    stub, key = service.stub, auth("key-app")
    calls = [
        stub.UpdateSegment(
            segments_pb2.UpdateSegmentRequest(segment=_segment(CARTS, "carts")), metadata=key
        ),
        stub.ArchiveSegment(segments_pb2.ArchiveSegmentRequest(segment_id="carts"), metadata=key),
        stub.RestoreSegmentVersion(
            segments_pb2.RestoreSegmentVersionRequest(segment_id="carts", version=1), metadata=key
        ),
        stub.CreateSegment(
            segments_pb2.CreateSegmentRequest(
                segment_id="loyal", segment=_segment({"segment": "carts"})
            ),
            metadata=key,
        ),
    ]
    # Each waits out the library's connection retries (about 12 s here): all at once.
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert [
        (o.code(), o.details()) if isinstance(o, grpc.aio.AioRpcError) else o for o in outcomes
    ] == [(grpc.StatusCode.UNAVAILABLE, "the database is unavailable; retry")] * 4
