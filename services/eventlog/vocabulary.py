"""The names of lifecycle states and RFM groups: defined here once, for every service.

Their values are the strings stored everywhere (profile rows, change rows, segment
definitions in the log, campaign triggers), so they never change. `NONE` ("") is "no
state yet" / "not a purchaser". The order of the tuples is stored too (the rollups number
lifecycle states by it): add new names at the end. Proto enum numbers are mapped in
`services/common/vocabulary_wire.py`. What the projector's fold keeps and stores are the
plain `str` values (`LifecycleState.NEW.value`): orjson writes those much faster than enum
members, and nothing that reads them back can tell the difference.
"""

from __future__ import annotations

from enum import StrEnum


class LifecycleState(StrEnum):
    NONE = ""
    NEW = "new"
    ACTIVE = "active"
    LOYAL = "loyal"
    DORMANT = "dormant"
    CHURNED = "churned"
    REACTIVATED = "reactivated"


class RfmGroup(StrEnum):
    NONE = ""
    CHAMPIONS = "champions"
    LOYAL = "loyal"
    POTENTIAL_LOYALISTS = "potential_loyalists"
    NEW_CUSTOMERS = "new_customers"
    PROMISING = "promising"
    NEED_ATTENTION = "need_attention"
    ABOUT_TO_SLEEP = "about_to_sleep"
    AT_RISK = "at_risk"
    CANT_LOSE_THEM = "cant_lose_them"
    HIBERNATING = "hibernating"
    LOST = "lost"


# The named states and groups (without NONE), in their stored order.
LIFECYCLE_STATES: tuple[LifecycleState, ...] = tuple(s for s in LifecycleState if s)
RFM_GROUPS: tuple[RfmGroup, ...] = tuple(g for g in RfmGroup if g)
