"""Readable names of the protos' enums, and times to protobuf."""

from __future__ import annotations

from cohortflow.types.v1 import types_pb2
from google.protobuf.timestamp_pb2 import Timestamp


def state_name(number: int) -> str:
    """ "active" for LIFECYCLE_STATE_ACTIVE; "" for none."""
    if not number:
        return ""
    return types_pb2.LifecycleState.Name(number).removeprefix("LIFECYCLE_STATE_").lower()


def group_name(number: int) -> str:
    """ "at_risk" for RFM_GROUP_AT_RISK; "" for none."""
    if not number:
        return ""
    return types_pb2.RfmGroup.Name(number).removeprefix("RFM_GROUP_").lower()


def timestamp(us: int) -> Timestamp:
    ts = Timestamp()
    ts.FromMicroseconds(us)
    return ts
