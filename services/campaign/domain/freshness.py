"""Which changes are real transitions now, and so may fire a campaign's trigger.

A user's lifecycle state, RFM group or segment membership can change on the stream
without anything happening to the user now: a late event rewrites a past state (a
*correction*, flagged by the projector), or a change is dated long ago (an offline
phone's backlog, a catch-up after an outage, imported history). Acting on those sends a
win-back to someone who never left. So a segment, lifecycle or RFM trigger skips them
unless the campaign asks for them; each skip is recorded as a suppressed delivery with
its reason. Broadcasts are fired by the scheduler and never skipped here.

Flags a change may carry are listed in `_FLAGS` with the campaign's opt-in: `correction`,
and `imported` (made while the app folded an imported history; no opt-in: it happened
before the app came, however recent).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from services.campaign.domain.changes import Change
from services.campaign.domain.model import CampaignDefinition

CORRECTION = "correction"
STALE_CHANGE = "stale_change"
IMPORTED_HISTORY = "imported_history"
SKIP_REASONS = frozenset({CORRECTION, STALE_CHANGE, IMPORTED_HISTORY})

_US = 1_000_000


@dataclass(frozen=True)
class _Flag:
    reason: str
    # Does the change carry the flag?
    carried: Callable[[Change], bool]
    # Does the campaign still want changes that carry it?
    wanted: Callable[[CampaignDefinition], bool]


_FLAGS = (
    _Flag(CORRECTION, lambda c: c.correction, lambda d: d.fire_on_corrections),
    # What an imported history changed happened before the app came: never a trigger,
    # whatever its age (a campaign's longer max_trigger_age is for late live events).
    _Flag(IMPORTED_HISTORY, lambda c: c.imported, lambda _d: False),
)


def age_us(change: Change, now_us: int) -> int:
    """How long ago the change took effect (0 when its time is not known)."""
    effective = change.effective_us or change.recorded_us
    return max(0, now_us - effective) if effective else 0


def skip_reason(definition: CampaignDefinition, change: Change, now_us: int) -> str:
    """Why `change` must not fire this campaign's trigger, or "" if it fires."""
    if change.kind == "broadcast":
        return ""
    for flag in _FLAGS:
        if flag.carried(change) and not flag.wanted(definition):
            return flag.reason
    if age_us(change, now_us) > definition.max_trigger_age_s * _US:
        return STALE_CHANGE
    return ""
