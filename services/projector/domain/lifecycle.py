"""The lifecycle state machine: a user's state at a time, and when it next changes.

Pure functions of the user's activity history (by event time) and the policy.
Inactivity transitions happen at deadlines computed here; the engine fires
them when the recorded clock passes them.
"""

from __future__ import annotations

import bisect
import itertools
import statistics

from services.eventlog.vocabulary import LifecycleState
from services.projector.domain.policy import DAY_US, LifecyclePolicy
from services.projector.domain.user import User, day_of

# The states as plain str (what users keep and the store writes), read on every event.
_NONE, _NEW, _ACTIVE, _LOYAL = (
    LifecycleState.NONE.value,
    LifecycleState.NEW.value,
    LifecycleState.ACTIVE.value,
    LifecycleState.LOYAL.value,
)
_DORMANT, _CHURNED, _REACTIVATED = (
    LifecycleState.DORMANT.value,
    LifecycleState.CHURNED.value,
    LifecycleState.REACTIVATED.value,
)


def usual_gap_days(user: User, policy: LifecyclePolicy) -> float | None:
    """Median gap between the user's recent active days, once there are enough gaps."""
    days = user.active_days
    if len(days) - 1 < policy.adaptive_min_gaps:
        return None
    recent = days[-(policy.adaptive_recent_gaps + 1) :]
    gaps = [b - a for a, b in itertools.pairwise(recent)]
    return float(statistics.median(gaps))


def dormant_after_us(user: User, policy: LifecyclePolicy) -> int:
    usual = user.usual_gap_days
    if not policy.adaptive or usual <= 0:
        return int(policy.dormant_days * DAY_US)
    return int(max(1.0, policy.adaptive_factor * usual) * DAY_US)


def churn_after_us(user: User, policy: LifecyclePolicy, dormant_after: int) -> int:
    return int(max(policy.churn_days * DAY_US, policy.churn_factor * dormant_after))


def active_days_in_window(user: User, at_us: int, window_days: int) -> list[int]:
    """Active days d with day(at) - window < d <= day(at)."""
    today = day_of(at_us)
    days = user.active_days
    lo = bisect.bisect_right(days, today - window_days)
    hi = bisect.bisect_right(days, today)
    return days[lo:hi]


def is_loyal(user: User, at_us: int, policy: LifecyclePolicy) -> bool:
    window = active_days_in_window(user, at_us, policy.loyal_window_days)
    return len(window) >= policy.loyal_min_active_days


def classify(user: User, at_us: int, policy: LifecyclePolicy) -> tuple[str, int | None]:
    """(state, since) of the user at `at_us`; since None means "from `at_us`"."""
    last = user.last_active_us
    first = user.first_active_us
    if last is None or first is None:
        return _NONE, None
    if user.churn_event_us is not None and user.churn_event_us >= last:
        return _CHURNED, user.churn_event_us
    dormant_after = dormant_after_us(user, policy)
    churn_after = churn_after_us(user, policy, dormant_after)
    if at_us >= last + churn_after:
        return _CHURNED, last + churn_after
    if at_us >= last + dormant_after:
        return _DORMANT, last + dormant_after
    returned = user.returned_us
    if returned is not None and returned <= at_us < returned + policy.reactivated_days * DAY_US:
        return _REACTIVATED, returned
    if at_us < first + policy.new_days * DAY_US:
        return _NEW, first
    if is_loyal(user, at_us, policy):
        return _LOYAL, None
    return _ACTIVE, None


def next_deadline(user: User, after_us: int, policy: LifecyclePolicy) -> int | None:
    """The earliest time after `after_us` at which the state changes without new events."""
    last = user.last_active_us
    first = user.first_active_us
    if last is None or first is None:
        return None
    state = user.state
    if state == _CHURNED:
        return None
    dormant_after = dormant_after_us(user, policy)
    candidates = []
    if state == _DORMANT:
        candidates.append(last + churn_after_us(user, policy, dormant_after))
    else:
        candidates.append(last + dormant_after)
    if state == _NEW:
        candidates.append(first + int(policy.new_days * DAY_US))
    if state == _REACTIVATED and user.returned_us is not None:
        candidates.append(user.returned_us + int(policy.reactivated_days * DAY_US))
    if state == _LOYAL:
        window = active_days_in_window(user, after_us, policy.loyal_window_days)
        surplus = len(window) - policy.loyal_min_active_days
        if surplus >= 0:
            # Loyalty ends when the (surplus+1)-th oldest day leaves the window.
            candidates.append((window[surplus] + policy.loyal_window_days) * DAY_US)
    future = [c for c in candidates if c > after_us]
    return min(future) if future else None
