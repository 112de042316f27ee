"""The one place where problems become gRPC status codes (google.rpc.Status, AIP-193).

`status_of` is the table: a service layer's refusals (services.common.domain_errors) and the
database's failures each have their code; anything else escaping a handler is INTERNAL.

Every status carries an `ErrorInfo` (domain `cohortflow.dev`, a stable `reason`); bad input
also a `BadRequest` naming each field, unknown resources a `ResourceInfo`. The details travel
in the `grpc-status-details-bin` trailer; protos/google/rpc/ holds their definitions for
clients in other languages. Texts are clipped so a status always fits in the trailers
(clients refuse metadata beyond 8 KiB by default) even when it quotes a huge input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NoReturn, Protocol

import grpc
import psycopg
from eventsourcing import persistence
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from psycopg_pool import PoolTimeout

from services.common.domain_errors import (
    AlreadyExists,
    FieldViolation,
    InvalidInput,
    NotFound,
    PreconditionFailed,
)

ERROR_DOMAIN = "cohortflow.dev"
# Bytes (UTF-8) of the message and of each violation's field and description; with at most
# MAX_VIOLATIONS the whole status stays under 5 KiB in the trailers, base64 included.
MAX_MESSAGE_BYTES = 400
MAX_VIOLATIONS = 10
MAX_VIOLATION_BYTES = 160
_CLIPPED = "...(clipped)"


def clip(text: str, limit: int) -> str:
    """`text`, cut to at most `limit` UTF-8 bytes (marked as clipped) if it was longer."""
    if len(text) * 4 <= limit:
        return text
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    return encoded[: limit - len(_CLIPPED)].decode(errors="ignore") + _CLIPPED


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
    return rpc_status.to_status(
        status_pb2.Status(code=code, message=clip(message, MAX_MESSAGE_BYTES), details=packed)
    )


def invalid_argument(
    problems: Iterable[FieldProblem], *, prefix: str = "", reason: str = "INVALID_ARGUMENT"
) -> grpc.Status:
    """INVALID_ARGUMENT with a BadRequest naming every bad field."""
    bad_request = error_details_pb2.BadRequest()
    count = 0
    for problem in problems:
        count += 1
        if count <= MAX_VIOLATIONS:
            bad_request.field_violations.add(
                field=clip(f"{prefix}{problem.field}", MAX_VIOLATION_BYTES),
                description=clip(problem.description, MAX_VIOLATION_BYTES),
            )
    first = bad_request.field_violations[0] if bad_request.field_violations else None
    message = f"{first.field}: {first.description}" if first else "invalid request"
    if count > 1:
        message += f" (and {count - 1} more)"
    if count > MAX_VIOLATIONS:
        message += f"; the first {MAX_VIOLATIONS} are listed"
    return _status(code_pb2.INVALID_ARGUMENT, message, reason, [bad_request])


def malformed_request(type_name: str) -> grpc.Status:
    """The request bytes are not a message of the method's request type."""
    return invalid_argument(
        [
            FieldViolation(
                "request",
                f"not a valid {type_name} protobuf message: truncated or wrong wire types,"
                " invalid UTF-8 in a string field, or nested deeper than 100 levels",
            )
        ],
        reason="MALFORMED_REQUEST",
    )


def not_found(
    message: str, *, reason: str = "NOT_FOUND", resource_type: str = "", resource_name: str = ""
) -> grpc.Status:
    """NOT_FOUND; with `resource_type` also a ResourceInfo naming what is missing."""
    details: list[object] = []
    if resource_type:
        details.append(
            error_details_pb2.ResourceInfo(
                resource_type=resource_type,
                resource_name=clip(resource_name, MAX_VIOLATION_BYTES),
                description="not found in the app of the calling API key",
            )
        )
    return _status(code_pb2.NOT_FOUND, message, reason, details)


def missing(kind: str, name: str, version: int = 0) -> grpc.Status:
    """NOT_FOUND for a `kind` ("user", "segment", "campaign") or one version of it, in the
    caller's app: reason `<KIND>_NOT_FOUND` / `<KIND>_VERSION_NOT_FOUND`, with a ResourceInfo."""
    if version:
        return not_found(
            f"{kind} {name!r} has no version {version}",
            reason=f"{kind.upper()}_VERSION_NOT_FOUND",
            resource_type=f"{kind}_version",
            resource_name=f"{name}@{version}",
        )
    return not_found(
        f"no {kind} {name!r} in this app",
        reason=f"{kind.upper()}_NOT_FOUND",
        resource_type=kind,
        resource_name=name,
    )


def user_not_found(user_id: str) -> grpc.Status:
    return missing("user", user_id)


def segment_not_found(segment_id: str, version: int = 0) -> grpc.Status:
    return missing("segment", segment_id, version)


def campaign_not_found(campaign_id: str, version: int = 0) -> grpc.Status:
    return missing("campaign", campaign_id, version)


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


def deadline_exceeded(message: str, reason: str = "DEADLINE_EXCEEDED") -> grpc.Status:
    return _status(code_pb2.DEADLINE_EXCEEDED, message, reason)


def _database_unavailable(_: Exception) -> grpc.Status:
    return unavailable("the database is unavailable; retry")


# Refusals of the service layers (services.common.domain_errors) and failures of the database,
# each with its status. Looked up along the exception's class hierarchy, most specific first.
_STATUS_OF: dict[type[Exception], Callable[[Any], grpc.Status]] = {
    InvalidInput: lambda e: invalid_argument(e.problems, reason=e.reason),
    NotFound: lambda e: missing(e.kind, e.name, e.version),
    AlreadyExists: lambda e: already_exists(str(e)),
    PreconditionFailed: lambda e: failed_precondition(str(e), e.reason),
    # A statement cut off by the server's statement_timeout (psycopg's OperationalError).
    psycopg.errors.QueryCanceled: lambda _: deadline_exceeded(
        "the query ran longer than the server allows; narrow it", "QUERY_TIMEOUT"
    ),
    # The database cannot be reached: psycopg's own errors, and eventsourcing's wrapping of
    # them (its recorders retry, then raise these), never NOT_FOUND or INTERNAL.
    psycopg.OperationalError: _database_unavailable,
    PoolTimeout: _database_unavailable,
    persistence.OperationalError: _database_unavailable,
    persistence.InterfaceError: _database_unavailable,
}


def status_of(error: Exception, error_id: str) -> grpc.Status:
    """The status for an exception escaping a handler: a refusal or the database's
    unavailability or timeout as such, anything else a bug (INTERNAL, `error_id` only)."""
    for kind in type(error).__mro__:
        to_status = _STATUS_OF.get(kind)
        if to_status is not None:
            return to_status(error)
    return internal(error_id)


def internal(error_id: str) -> grpc.Status:
    """A bug: the client learns only that it happened and the id the server logged it under."""
    return _status(
        code_pb2.INTERNAL,
        f"internal error; the server logged it as {error_id}",
        "INTERNAL",
    )


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
