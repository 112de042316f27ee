"""Failed calls become one line: service, code, message and every bad field."""

from __future__ import annotations

import grpc
import pytest

from services.cli.client import CliError, Target, describe_rpc_error
from services.common.grpc.errors import FieldViolation, invalid_argument, not_found


class CallError(grpc.RpcError):
    """A failed call as grpc reports it to a client: code, details, trailing metadata."""

    def __init__(self, status: grpc.Status) -> None:
        self._status = status

    def code(self) -> grpc.StatusCode:
        return self._status.code

    def details(self) -> str:
        return self._status.details

    def trailing_metadata(self) -> tuple[tuple[str, bytes | str], ...]:
        return self._status.trailing_metadata


class Unreachable(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return (
            "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1:"
            " Failed to connect to remote host: Connection refused"
        )

    def trailing_metadata(self) -> tuple[()]:
        return ()


def test_bad_request_lists_every_field_violation_once() -> None:
    status = invalid_argument(
        [
            FieldViolation("event.name", "is required"),
            FieldViolation("event.context.country", "must be an ISO 3166-1 alpha-2 code"),
        ]
    )
    line = describe_rpc_error(CallError(status), "ingest", "127.0.0.1:50051")
    assert line == (
        "ingest at 127.0.0.1:50051 answered INVALID_ARGUMENT: event.name: is required;"
        " event.context.country: must be an ISO 3166-1 alpha-2 code"
    )


def test_other_errors_show_code_and_message() -> None:
    line = describe_rpc_error(CallError(not_found("no user 'bob'")), "projector", "h:1")
    assert line == "projector at h:1 answered NOT_FOUND: no user 'bob'"


def test_an_unreachable_service_is_named_with_its_address_and_how_to_start_it() -> None:
    line = describe_rpc_error(Unreachable(), "ingest", "127.0.0.1:1")
    assert line == (
        "cannot reach ingest at 127.0.0.1:1 (connection refused);"
        " is the suite running? `make run` starts it"
    )
    assert "\n" not in line


def test_a_missing_key_says_where_keys_come_from() -> None:
    with pytest.raises(CliError, match=r"COHORTFLOW_API_KEY.*make run"):
        Target(key=None).metadata()


def test_the_key_goes_into_the_authorization_metadata() -> None:
    assert Target(key="k1").metadata() == (("authorization", "Bearer k1"),)
