"""Reading the rich details of a gRPC status (google.rpc) in tests."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2


def status_reason(status: grpc.Status) -> str:
    """The ErrorInfo reason of a status built by services.common.grpc.errors."""
    trailing = dict(status.trailing_metadata)
    parsed = status_pb2.Status.FromString(trailing["grpc-status-details-bin"])
    info = error_details_pb2.ErrorInfo()
    parsed.details[-1].Unpack(info)
    return info.reason
