"""Lifecycle states and RFM groups (their stored names) as cohortflow.types.v1 enum values.

Shared by the projector's edges (changes, profiles, analytics, segment conditions) and the
clients that turn segment conditions into requests; "" is the unset state or group.
"""

from __future__ import annotations

from cohortflow.types.v1 import types_pb2

LIFECYCLE_STATES = {
    "": types_pb2.LIFECYCLE_STATE_UNSPECIFIED,
    "new": types_pb2.LIFECYCLE_STATE_NEW,
    "active": types_pb2.LIFECYCLE_STATE_ACTIVE,
    "loyal": types_pb2.LIFECYCLE_STATE_LOYAL,
    "dormant": types_pb2.LIFECYCLE_STATE_DORMANT,
    "churned": types_pb2.LIFECYCLE_STATE_CHURNED,
    "reactivated": types_pb2.LIFECYCLE_STATE_REACTIVATED,
}
RFM_GROUPS = {
    "": types_pb2.RFM_GROUP_UNSPECIFIED,
    "champions": types_pb2.RFM_GROUP_CHAMPIONS,
    "loyal": types_pb2.RFM_GROUP_LOYAL,
    "potential_loyalists": types_pb2.RFM_GROUP_POTENTIAL_LOYALISTS,
    "new_customers": types_pb2.RFM_GROUP_NEW_CUSTOMERS,
    "promising": types_pb2.RFM_GROUP_PROMISING,
    "need_attention": types_pb2.RFM_GROUP_NEED_ATTENTION,
    "about_to_sleep": types_pb2.RFM_GROUP_ABOUT_TO_SLEEP,
    "at_risk": types_pb2.RFM_GROUP_AT_RISK,
    "cant_lose_them": types_pb2.RFM_GROUP_CANT_LOSE_THEM,
    "hibernating": types_pb2.RFM_GROUP_HIBERNATING,
    "lost": types_pb2.RFM_GROUP_LOST,
}
