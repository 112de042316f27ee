"""Each refusal of the segment commands, and each database failure, has one gRPC status."""

from __future__ import annotations

import grpc
import psycopg
import pytest
from eventsourcing import persistence
from psycopg_pool import PoolTimeout

from services.common.domain_errors import FieldViolation
from services.common.grpc.errors import status_of
from services.projector.service_layer.segment_checks import InvalidDefinition
from services.projector.service_layer.segment_commands import (
    SegmentArchived,
    SegmentExists,
    SegmentNotFound,
    VersionConflict,
)
from tests.support.statuses import status_reason


@pytest.mark.parametrize(
    ("error", "code", "reason", "message"),
    [
        (
            SegmentNotFound("vip"),
            grpc.StatusCode.NOT_FOUND,
            "SEGMENT_NOT_FOUND",
            "no segment 'vip' in this app",
        ),
        (
            SegmentNotFound("vip", 3),
            grpc.StatusCode.NOT_FOUND,
            "SEGMENT_VERSION_NOT_FOUND",
            "segment 'vip' has no version 3",
        ),
        (
            SegmentExists("vip"),
            grpc.StatusCode.ALREADY_EXISTS,
            "ALREADY_EXISTS",
            "segment 'vip' exists",
        ),
        (
            VersionConflict("segment is at version 2, not 1"),
            grpc.StatusCode.FAILED_PRECONDITION,
            "VERSION_CONFLICT",
            "segment is at version 2, not 1",
        ),
        (
            SegmentArchived("segment 'vip' is archived"),
            grpc.StatusCode.FAILED_PRECONDITION,
            "ARCHIVED",
            "segment 'vip' is archived",
        ),
        (
            InvalidDefinition([FieldViolation("segment.condition", "is required")]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_ARGUMENT",
            "segment.condition: is required",
        ),
    ],
)
def test_each_refusal_has_its_code_and_reason(
    error: Exception, code: grpc.StatusCode, reason: str, message: str
) -> None:
    status = status_of(error, "id")
    assert (status.code, status.details, status_reason(status)) == (code, message, reason)


@pytest.mark.parametrize(
    "error",
    [
        persistence.OperationalError("couldn't get a connection after 5.00 sec"),
        persistence.InterfaceError("connection closed"),
        psycopg.OperationalError("connection refused"),
        PoolTimeout("couldn't get a connection after 5.00 sec"),
    ],
)
def test_a_database_that_cannot_be_reached_is_unavailable(error: Exception) -> None:
    status = status_of(error, "id")
    assert (status.code, status_reason(status)) == (
        grpc.StatusCode.UNAVAILABLE,
        "BACKEND_UNAVAILABLE",
    )


def test_a_cancelled_query_is_a_deadline_and_anything_else_a_bug() -> None:
    status = status_of(psycopg.errors.QueryCanceled("canceling statement"), "id")
    assert (status.code, status_reason(status)) == (
        grpc.StatusCode.DEADLINE_EXCEEDED,
        "QUERY_TIMEOUT",
    )
    status = status_of(KeyError("secret detail"), "abc123")
    assert (status.code, status_reason(status)) == (grpc.StatusCode.INTERNAL, "INTERNAL")
    assert status.details == "internal error; the server logged it as abc123"
