"""The CLI's client retries transient failures of idempotent calls, and nothing else.

A real gRPC server (IngestService) answers TrackBatch from a script of outcomes; the
client (services.cli.client.Connection, which the simulator and the import use) must
send the same request again on UNAVAILABLE, DEADLINE_EXCEEDED and RESOURCE_EXHAUSTED
with a RetryInfo, give up at once on anything else, and give up on transient failures
once its retry deadline has passed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from cohortflow.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from services.cli.client import CliError, Connection, Target
from services.devstack.embedded import free_port
from tests.support.ingest import event


def _status(code: int, message: str, *details: object) -> grpc.Status:
    packed = []
    for detail in details:
        holder = any_pb2.Any()
        holder.Pack(detail)  # type: ignore[arg-type]
        packed.append(holder)
    return rpc_status.to_status(status_pb2.Status(code=code, message=message, details=packed))


UNAVAILABLE = _status(code_pb2.UNAVAILABLE, "database unavailable")
INVALID = _status(code_pb2.INVALID_ARGUMENT, "events[0].name: required")
TOO_LARGE = _status(code_pb2.RESOURCE_EXHAUSTED, "message larger than max")
THROTTLED = _status(
    code_pb2.RESOURCE_EXHAUSTED,
    "slow down",
    error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(nanos=300_000_000)),
)
SLOW = "slow"  # answer after the attempt's deadline


class ScriptedIngest(ingest_pb2_grpc.IngestServiceServicer):
    """Answers each TrackBatch with the next outcome of its script, then ACCEPTED."""

    def __init__(self) -> None:
        self.script: list[grpc.Status | str] = []
        self.requests: list[ingest_pb2.TrackBatchRequest] = []
        self.times: list[float] = []

    async def TrackBatch(
        self, request: ingest_pb2.TrackBatchRequest, context: grpc.aio.ServicerContext
    ) -> ingest_pb2.TrackBatchResponse:
        self.requests.append(request)
        self.times.append(asyncio.get_running_loop().time())
        outcome = self.script.pop(0) if self.script else None
        if outcome == SLOW:
            await asyncio.sleep(2)
        elif isinstance(outcome, grpc.Status):
            await context.abort_with_status(outcome)
        accepted = ingest_pb2.EventResult.STATUS_ACCEPTED
        return ingest_pb2.TrackBatchResponse(
            results=[
                ingest_pb2.EventResult(event_id=e.event_id, status=accepted) for e in request.events
            ]
        )


@pytest.fixture
async def ingest() -> AsyncIterator[tuple[ScriptedIngest, str]]:
    server = grpc.aio.server()
    servicer = ScriptedIngest()
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(servicer, server)
    address = f"127.0.0.1:{free_port()}"
    server.add_insecure_port(address)
    await server.start()
    yield servicer, address
    await server.stop(None)


REQUEST = ingest_pb2.TrackBatchRequest(events=[event("Opened", event_id="e-1")])


async def _track(address: str, *, idempotent: bool = True, retry_s: float = 20.0) -> object:
    async with Connection(Target(ingest=address, key="k"), "ingest", retry_s=retry_s) as conn:
        stub = ingest_pb2_grpc.IngestServiceStub(conn.channel)
        return await conn.unary(stub.TrackBatch, REQUEST, deadline_s=0.5, idempotent=idempotent)


@pytest.mark.parametrize(
    "failures",
    [
        pytest.param([UNAVAILABLE, UNAVAILABLE, UNAVAILABLE], id="unavailable"),
        pytest.param([SLOW], id="deadline-exceeded"),
        pytest.param([THROTTLED], id="resource-exhausted-with-retry-info"),
    ],
)
async def test_transient_failures_are_retried_with_the_same_request(
    ingest: tuple[ScriptedIngest, str], failures: list[grpc.Status | str]
) -> None:
    servicer, address = ingest
    servicer.script = list(failures)
    reply = await _track(address)
    assert [r.event_id for r in reply.results] == ["e-1"]  # type: ignore[attr-defined]
    assert servicer.requests == [REQUEST] * (len(failures) + 1)


async def test_a_retry_info_delay_is_honoured(ingest: tuple[ScriptedIngest, str]) -> None:
    servicer, address = ingest
    servicer.script = [THROTTLED]
    await _track(address)
    first, second = servicer.times
    assert second - first >= 0.3


@pytest.mark.parametrize(
    ("failure", "code"),
    [
        pytest.param(INVALID, "INVALID_ARGUMENT", id="invalid-argument"),
        pytest.param(TOO_LARGE, "RESOURCE_EXHAUSTED", id="resource-exhausted-without-retry-info"),
    ],
)
async def test_other_failures_are_final_at_once(
    ingest: tuple[ScriptedIngest, str], failure: grpc.Status, code: str
) -> None:
    servicer, address = ingest
    servicer.script = [failure]
    with pytest.raises(CliError, match=f"answered {code}"):
        await _track(address)
    assert len(servicer.requests) == 1


async def test_a_call_not_marked_idempotent_is_never_repeated(
    ingest: tuple[ScriptedIngest, str],
) -> None:
    servicer, address = ingest
    servicer.script = [UNAVAILABLE]
    with pytest.raises(CliError, match="answered UNAVAILABLE: database unavailable"):
        await _track(address, idempotent=False)
    assert len(servicer.requests) == 1


async def test_transient_failures_give_up_after_the_retry_deadline(
    ingest: tuple[ScriptedIngest, str],
) -> None:
    servicer, address = ingest
    servicer.script = [UNAVAILABLE] * 1000
    with pytest.raises(CliError, match="answered UNAVAILABLE: database unavailable"):
        await _track(address, retry_s=1.0)
    assert 1 < len(servicer.requests) < 1000
    assert servicer.times[-1] - servicer.times[0] <= 1.0


async def test_a_service_that_never_answered_is_reported_at_once() -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    with pytest.raises(CliError, match=r"cannot reach ingest .* is the suite running"):
        await _track(nowhere, retry_s=600)  # a retry would run into the test timeout
