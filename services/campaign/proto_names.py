"""Proto enum numbers <-> the lowercase names the domain and the profiles table use.

LIFECYCLE_STATE_DORMANT <-> "dormant", RFM_GROUP_AT_RISK <-> "at_risk";
UNSPECIFIED (or an unknown number) <-> "".
"""

from __future__ import annotations

from typing import Any

from cohortflow.types.v1 import types_pb2

_LIFECYCLE = "LIFECYCLE_STATE_"
_RFM = "RFM_GROUP_"


def _name(enum: object, prefix: str, number: int) -> str:
    if number not in enum.values():  # type: ignore[attr-defined]
        return ""
    name: str = enum.Name(number)  # type: ignore[attr-defined]
    return "" if name.endswith("_UNSPECIFIED") else name.removeprefix(prefix).lower()


def lifecycle_name(number: int) -> str:
    return _name(types_pb2.LifecycleState, _LIFECYCLE, number)


def rfm_name(number: int) -> str:
    return _name(types_pb2.RfmGroup, _RFM, number)


def lifecycle_number(name: str) -> Any:
    return types_pb2.LifecycleState.Value(_LIFECYCLE + name.upper())


def rfm_number(name: str) -> Any:
    return types_pb2.RfmGroup.Value(_RFM + name.upper())
