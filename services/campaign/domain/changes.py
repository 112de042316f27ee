"""Changes a campaign can act on, and which campaigns a change triggers.

A `Change` is the domain view of a change-stream message (or of one member of
a broadcast run). A delayed send carries a *condition*, e.g. "segment:s1:in":
while it waits, a later change that makes the condition false cancels it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.campaign.domain.model import (
    BroadcastTrigger,
    LifecycleTrigger,
    RfmTrigger,
    SegmentTrigger,
    Trigger,
)


@dataclass(frozen=True)
class Change:
    change_id: str
    app_id: str
    user_id: str
    # "segment", "lifecycle", "rfm" or "broadcast".
    kind: str
    # When the change was made (the log's recorded clock), microseconds.
    recorded_us: int
    user_sequence: int = 0
    segment_id: str = ""
    segment_version: int = 0
    entered: bool = False
    # Lifecycle states or RFM groups, lowercase names ("" for none).
    from_value: str = ""
    to_value: str = ""
    event_ids: tuple[str, ...] = ()
    event_name: str = ""
    # A late event showed an earlier change wrong; this one sets the record straight.
    correction: bool = False
    # Made while the app folded an imported history: it happened before the app came.
    imported: bool = False
    # When it took effect in the user's time (0: not known, then recorded_us counts).
    effective_us: int = 0
    extra: dict[str, str] = field(default_factory=dict)


def triggers(trigger: Trigger, change: Change) -> bool:
    """Does this change fire this trigger? (Broadcasts fire from the scheduler only.)"""
    if isinstance(trigger, SegmentTrigger):
        return (
            change.kind == "segment"
            and change.segment_id == trigger.segment_id
            and change.entered == trigger.entered
        )
    if isinstance(trigger, LifecycleTrigger):
        return change.kind == "lifecycle" and _moved(change, trigger.from_states, trigger.to_states)
    if isinstance(trigger, RfmTrigger):
        return change.kind == "rfm" and _moved(change, trigger.from_groups, trigger.to_groups)
    return (
        isinstance(trigger, BroadcastTrigger)
        and change.kind == "broadcast"
        and change.segment_id == trigger.segment_id
    )


def _moved(change: Change, sources: tuple[str, ...], targets: tuple[str, ...]) -> bool:
    return change.to_value in targets and (not sources or change.from_value in sources)


def condition(trigger: Trigger) -> str:
    """What must still hold when a delayed send of this trigger goes out."""
    if isinstance(trigger, SegmentTrigger):
        return f"segment:{trigger.segment_id}:{'in' if trigger.entered else 'out'}"
    if isinstance(trigger, BroadcastTrigger):
        return f"segment:{trigger.segment_id}:in"
    return ""


def condition_of_change(trigger: Trigger, change: Change) -> str:
    """The condition of a send triggered by `change` (lifecycle/RFM: the state reached)."""
    if isinstance(trigger, LifecycleTrigger):
        return f"lifecycle:{change.to_value}"
    if isinstance(trigger, RfmTrigger):
        return f"rfm:{change.to_value}"
    return condition(trigger)


def broken_conditions(change: Change) -> tuple[str, str]:
    """(condition this change makes false, reason) or ("", "") for none."""
    if change.kind == "segment":
        side = "in" if not change.entered else "out"
        reason = "left_segment" if not change.entered else "reentered_segment"
        return f"segment:{change.segment_id}:{side}", reason
    if change.kind == "lifecycle" and change.from_value:
        return f"lifecycle:{change.from_value}", "lifecycle_changed"
    if change.kind == "rfm" and change.from_value:
        return f"rfm:{change.from_value}", "rfm_group_changed"
    return "", ""
