"""What partitions of the log tell one another. Stored by topic: this module must not move.

A partition's fold never reads another partition. What one partition must know of
another reaches it as an event in its own log, appended by the sender's mail relay with
a deterministic id (so a repeated or replayed sending stores it once), and therefore at
a fixed position of the receiver's sequence: replaying a partition's log replays it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from services.eventlog.events import LogEvent

PARTITION_EVENTS_NAMESPACE = uuid.UUID("0b6f4a1e-9d2c-4f83-a6e5-7c1d2b3a4f50")


def mail_uuid(*parts: object) -> uuid.UUID:
    return uuid.uuid5(PARTITION_EVENTS_NAMESPACE, "\x1f".join(str(p) for p in parts))


@dataclass(frozen=True)
class AppWideFactRelayed(LogEvent):
    """A copy of an app-wide fact of partition 0 (a segment definition or archive, RFM cut
    points): folded as the original; `origin_position` is its notification id in p0."""

    KIND = "relayed"

    origin_position: int
    # The original as partition 0 stores it: its originator (aggregate) id and version,
    # topic, and state (JSON text).
    origin_id: str
    origin_version: int
    topic: str
    state: str


@dataclass(frozen=True)
class AnonymousLinked(LogEvent):
    """To the partition of an anonymous id: it turned out to be `user_id`, whose partition
    folded the Identify that says so. Hand the anonymous history over."""

    KIND = "anonymous_linked"

    app_id: str
    anonymous_id: str
    user_id: str
    # When the Identify that linked them took effect (the merge is dated from then).
    linked_us: int = 0
    # That Identify (event id and time): the cause of the changes the merge makes.
    event_id: str = ""
    event_time_us: int = 0


@dataclass(frozen=True)
class AnonymousHandedOver(LogEvent):
    """To the partition of `user_id`: the whole state of the anonymous user `anonymous_id`
    (as the projector keeps it), to merge as if both had always lived together."""

    KIND = "anonymous_handed_over"

    app_id: str
    anonymous_id: str
    user_id: str
    state: dict[str, Any]
    linked_us: int = 0
    event_id: str = ""
    event_time_us: int = 0
    # The state's personal fields, sealed with the anonymous id's key (sealing.seal_state;
    # the event id is the associated data): "" when there were none.
    sealed: str = ""


@dataclass(frozen=True)
class EventForwarded(LogEvent):
    """To the partition of `user_id`: an event of their anonymous id that still reached the
    anonymous id's partition after the hand-over (routed before ingest knew the link)."""

    KIND = "forwarded"

    app_id: str
    user_id: str
    # The event as its first partition stores it: id, topic and state (JSON text).
    origin_id: str
    topic: str
    state: str


@dataclass(frozen=True)
class SegmentPartitionBuilt(LogEvent):
    """A partition's share of a segment version is built from its history up to
    `through_position` (the definition's position in this partition) and stored: the
    partition's Segment.Built (partitioned deployments only; one partition's builds are
    recorded on the Segment aggregate, as before)."""

    KIND = "partition_built"

    app_id: str
    segment_id: str
    definition_version: int
    through_position: int
    users: int


@dataclass(frozen=True)
class RfmCutPointsRecorded(LogEvent):
    """An app's RFM cut points over the purchasers of every partition, computed at the
    recompute interval starting at `tick_time_us` (partitioned deployments only)."""

    KIND = "rfm_cut_points"

    app_id: str
    slot: int
    tick_time_us: int
    quintiles: dict[str, Any]
