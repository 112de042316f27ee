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


def group_label(name: str) -> str:
    """ "at_risk" -> "at risk", "cant_lose_them" -> "can't lose them"."""
    return "can't lose them" if name == "cant_lose_them" else name.replace("_", " ")


def timestamp(us: int) -> Timestamp:
    ts = Timestamp()
    ts.FromMicroseconds(us)
    return ts


# What each reason of an unsent delivery means (ListDeliveries, GetCampaignStats).
REASONS = {
    "no_consent": "the user has not consented to this channel",
    "no_contact": "no address for this channel (email, phone or push token)",
    "holdout": "in the app's global holdout",
    "frequency_cap": "the app's cap of messages per channel was reached",
    "campaign_frequency_cap": "the campaign's cap of messages was reached",
    "quiet_hours": "in the user's quiet hours, and the campaign drops such sends",
    "reentry": "already sent to this user (the campaign's re-entry rule)",
    "correction": "a late event corrected the past: not a real transition now",
    "stale_change": "the change took effect longer ago than the campaign's maximum trigger age",
    "imported_history": "part of an imported history: it happened before the app came",
    "left_segment": "the user left the segment before the send was due",
    "lifecycle_changed": "the user's lifecycle state changed before the send was due",
    "paused": "the campaign was paused before the send was due",
    "archived": "the campaign was archived before the send was due",
    "missing_variable": "the template needs a value this user does not have",
    "render_error": "the template failed for this user (see the delivery's error)",
    "render_timeout": "the template took too long",
    "render_too_large": "the message came out larger than allowed",
    "dead_letter": "every attempt to send failed",
    "webhook_address_refused": "the webhook's address resolved to a refused network",
}
