"""Campaign errors as google.rpc.Status (bad input goes through common.grpc.errors)."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from services.common.grpc.errors import ERROR_DOMAIN


def _status(code: int, message: str, reason: str) -> grpc.Status:
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN))
    return rpc_status.to_status(status_pb2.Status(code=code, message=message, details=[info]))


def not_found(what: str) -> grpc.Status:
    return _status(code_pb2.NOT_FOUND, f"{what} not found", "NOT_FOUND")


def failed_precondition(message: str) -> grpc.Status:
    return _status(code_pb2.FAILED_PRECONDITION, message, "CAMPAIGN_STATE")


def aborted(message: str) -> grpc.Status:
    return _status(code_pb2.ABORTED, message, "VERSION_CONFLICT")
