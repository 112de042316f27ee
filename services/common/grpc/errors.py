"""The one place where problems become gRPC status codes (google.rpc.Status, AIP-193)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NoReturn, Protocol

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

ERROR_DOMAIN = "cohortflow.dev"


class FieldProblem(Protocol):
    @property
    def field(self) -> str: ...

    @property
    def description(self) -> str: ...


def _status(code: int, message: str, reason: str, details: Iterable[object] = ()) -> grpc.Status:
    packed = []
    for detail in [
        *details,
        error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN),
    ]:
        holder = any_pb2.Any()
        holder.Pack(detail)  # type: ignore[arg-type]
        packed.append(holder)
    return rpc_status.to_status(status_pb2.Status(code=code, message=message, details=packed))


def invalid_argument(
    problems: Iterable[FieldProblem], *, prefix: str = "", reason: str = "INVALID_ARGUMENT"
) -> grpc.Status:
    """INVALID_ARGUMENT with a BadRequest naming every bad field."""
    bad_request = error_details_pb2.BadRequest()
    for problem in problems:
        bad_request.field_violations.add(
            field=f"{prefix}{problem.field}", description=problem.description
        )
    first = bad_request.field_violations[0] if bad_request.field_violations else None
    message = f"{first.field}: {first.description}" if first else "invalid request"
    if len(bad_request.field_violations) > 1:
        message += f" (and {len(bad_request.field_violations) - 1} more)"
    return _status(code_pb2.INVALID_ARGUMENT, message, reason, [bad_request])


@dataclass(frozen=True)
class FieldViolation:
    """A bad request field, for edges that have no domain violation type of their own."""

    field: str
    description: str


def not_found(message: str) -> grpc.Status:
    return _status(code_pb2.NOT_FOUND, message, "NOT_FOUND")


def failed_precondition(message: str, reason: str = "FAILED_PRECONDITION") -> grpc.Status:
    return _status(code_pb2.FAILED_PRECONDITION, message, reason)


def already_exists(message: str) -> grpc.Status:
    return _status(code_pb2.ALREADY_EXISTS, message, "ALREADY_EXISTS")


def unauthenticated(message: str) -> grpc.Status:
    return _status(code_pb2.UNAUTHENTICATED, message, "API_KEY_INVALID")


def unavailable(message: str) -> grpc.Status:
    return _status(code_pb2.UNAVAILABLE, message, "BACKEND_UNAVAILABLE")


def resource_exhausted(message: str, reason: str = "RESOURCE_EXHAUSTED") -> grpc.Status:
    return _status(code_pb2.RESOURCE_EXHAUSTED, message, reason)


def deadline_exceeded(message: str) -> grpc.Status:
    return _status(code_pb2.DEADLINE_EXCEEDED, message, "DEADLINE_EXCEEDED")


async def abort(context: grpc.aio.ServicerContext, status: grpc.Status) -> NoReturn:
    await context.abort_with_status(status)
    raise AssertionError("unreachable: abort_with_status raises")


def bad_request_of(error: grpc.aio.AioRpcError | grpc.RpcError) -> list[tuple[str, str]]:
    """Client side: the (field, description) pairs of a BadRequest in an error, if any."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    out: list[tuple[str, str]] = []
    if status is None:
        return out
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            out.extend((v.field, v.description) for v in bad_request.field_violations)
    return out
