"""Lifecycle states and RFM groups <-> their cohortflow.types.v1 enum numbers, the one map.

NONE ("") is UNSPECIFIED. `*_OF_PB` maps a number back to its name as a plain `str` (it
goes into stored definitions); UNSPECIFIED and numbers this build does not know are not in
it. A name without its proto value fails at import.
"""

from __future__ import annotations

from typing import Any

from cohortflow.types.v1 import types_pb2

from services.eventlog.vocabulary import LifecycleState, RfmGroup


def _number(enum: Any, name: str) -> Any:
    return enum.Value(name)


LIFECYCLE_STATE_PB: dict[str, types_pb2.LifecycleState] = {
    state: _number(types_pb2.LifecycleState, f"LIFECYCLE_STATE_{state.name}")
    if state
    else types_pb2.LIFECYCLE_STATE_UNSPECIFIED
    for state in LifecycleState
}
RFM_GROUP_PB: dict[str, types_pb2.RfmGroup] = {
    group: _number(types_pb2.RfmGroup, f"RFM_GROUP_{group.name}")
    if group
    else types_pb2.RFM_GROUP_UNSPECIFIED
    for group in RfmGroup
}
LIFECYCLE_STATE_OF_PB: dict[int, str] = {
    number: str(state) for state, number in LIFECYCLE_STATE_PB.items() if state
}
RFM_GROUP_OF_PB: dict[int, str] = {
    number: str(group) for group, number in RFM_GROUP_PB.items() if group
}
