"""The common server layer in process: bugs answered without their text, database failures
as such, requests over the size limit refused, and nothing read before the key is checked."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import grpc
import psycopg
import pytest
from cohortflow.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from cohortflow.segments.v1 import segments_pb2, segments_pb2_grpc

from services.common.grpc.auth import ApiKeys
from services.common.grpc.server import Registration, Served, create_server
from services.ingest.bootstrap import SERVICE_NAME, start_ingest
from services.ingest.config import IngestSettings
from tests.support.ingest import auth, event

KEYS = ApiKeys([("shop", "key-shop")])


class Broken(ingest_pb2_grpc.IngestServiceServicer):
    """Fails the way a bug (or the database) would; counts the calls that reached it."""

    def __init__(self) -> None:
        self.calls = 0
        self.error: Exception = RuntimeError("secret detail: /srv/cohortflow/config.py line 7")

    async def Track(self, request: Any, context: Any) -> Any:
        self.calls += 1
        raise self.error


class Watch(segments_pb2_grpc.SegmentServiceServicer):
    def __init__(self) -> None:
        self.calls = 0

    async def WatchMembershipChanges(self, request: Any, context: Any) -> Any:
        self.calls += 1
        yield segments_pb2.WatchMembershipChangesResponse()
        raise ValueError("secret detail in a stream")


@pytest.fixture
async def served() -> AsyncIterator[tuple[Served, Broken, Watch]]:
    broken, watch = Broken(), Watch()
    server = await create_server(
        "127.0.0.1:0",
        [
            Registration(ingest_pb2_grpc.add_IngestServiceServicer_to_server, broken, SERVICE_NAME),
            Registration(
                segments_pb2_grpc.add_SegmentServiceServicer_to_server,
                watch,
                "cohortflow.segments.v1.SegmentService",
            ),
        ],
        KEYS,
    )
    yield server, broken, watch
    await server.stop(0)


async def _track(port: int, key: str | None = "key-shop", body: bytes | None = None) -> Any:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        method = channel.unary_unary(
            "/cohortflow.ingest.v1.IngestService/Track",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        data = (
            body if body is not None else ingest_pb2.TrackRequest(event=event()).SerializeToString()
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await method(data, metadata=auth(key) if key else None, timeout=10)
        return caught.value


async def test_a_handler_bug_is_internal_with_an_error_id_and_no_text(
    served: tuple[Served, Broken, Watch],
) -> None:
    server, _broken, _ = served
    error = await _track(server.port)
    assert error.code() == grpc.StatusCode.INTERNAL
    assert re.fullmatch(r"internal error; the server logged it as [0-9a-f]{16}", error.details())
    trailers = b"".join(v for _, v in error.trailing_metadata() if isinstance(v, bytes))
    assert b"secret" not in trailers


async def test_a_bug_in_a_stream_is_internal_without_text(
    served: tuple[Served, Broken, Watch],
) -> None:
    server, _, watch = served
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = segments_pb2_grpc.SegmentServiceStub(channel)
        stream = stub.WatchMembershipChanges(
            segments_pb2.WatchMembershipChangesRequest(), metadata=auth("key-shop")
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in stream:
                pass
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in caught.value.details()
    assert watch.calls == 1


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (psycopg.OperationalError("connection refused (secret)"), grpc.StatusCode.UNAVAILABLE),
        (
            psycopg.errors.QueryCanceled("statement timeout (secret)"),
            grpc.StatusCode.DEADLINE_EXCEEDED,
        ),
    ],
)
async def test_database_failures_are_named_without_their_text(
    served: tuple[Served, Broken, Watch], error: Exception, code: grpc.StatusCode
) -> None:
    server, broken, _ = served
    broken.error = error
    answer = await _track(server.port)
    assert answer.code() == code
    assert "secret" not in answer.details()


@pytest.mark.parametrize("key", [None, "not-a-key"])
async def test_without_a_valid_key_nothing_is_read_or_parsed(
    served: tuple[Served, Broken, Watch], key: str | None
) -> None:
    server, broken, watch = served
    # 3 MiB of bytes that are no request: parsed, they would be INVALID_ARGUMENT.
    error = await _track(server.port, key, body=b"\xff" * (3 * 1024 * 1024))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stream = channel.unary_stream(
            "/cohortflow.segments.v1.SegmentService/WatchMembershipChanges",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )(b"\xff" * 1024, metadata=auth(key) if key else None)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in stream:
                pass
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert (broken.calls, watch.calls) == (0, 0)


async def test_a_request_over_the_configured_size_is_refused_before_parsing(
    database_url: str,
) -> None:
    settings = IngestSettings(
        DATABASE_URL=database_url,
        INGEST_LISTEN="127.0.0.1:0",
        INGEST_HTTP_LISTEN="0",
        INGEST_MAX_RECEIVE_BYTES=65536,
    )
    app = await start_ingest(settings, KEYS)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            small = [event(properties={"note": "x" * 500}) for _ in range(100)]
            reply = await stub.TrackBatch(
                ingest_pb2.TrackBatchRequest(events=small), metadata=auth("key-shop")
            )
            assert len(reply.results) == 100
            big = [event(properties={"note": "x" * 1000}) for _ in range(100)]
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.TrackBatch(
                    ingest_pb2.TrackBatchRequest(events=big), metadata=auth("key-shop")
                )
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        await app.stop(1)
