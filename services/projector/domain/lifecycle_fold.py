"""The lifecycle fold: a user's activity from their events, and their published state.

`lifecycle.py` says what state a user is in at a time and when it next changes; this
module keeps the activity it judges by up to date, publishes each change of state (dated
when it took effect, flagged a correction when a late event shows the state began on
wrong premises) and queues the user's next lifecycle deadline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.eventlog.events import EventTracked, UserIdentified
from services.eventlog.vocabulary import LifecycleState
from services.projector.domain import lifecycle
from services.projector.domain.changes import EVENT, LATE_EVENT, LIFECYCLE
from services.projector.domain.deadlines import DeadlineQueue
from services.projector.domain.fold_state import FoldState
from services.projector.domain.policy import DAY_US, LifecyclePolicy
from services.projector.domain.segments.compile import USES_LIFECYCLE
from services.projector.domain.segments.membership import Membership
from services.projector.domain.user import User, day_of

if TYPE_CHECKING:
    from services.projector.domain.rfm_fold import CauseEvent

_S = LifecycleState
_LIVELY = frozenset({_S.NEW.value, _S.ACTIVE.value, _S.LOYAL.value, _S.REACTIVATED.value})
_NONE = _S.NONE.value
_DORMANT_OR_CHURNED = (_S.DORMANT.value, _S.CHURNED.value)
# States that begin at a time of their own (a new `since` is news).
_DATED = (*_DORMANT_OR_CHURNED, _S.NEW.value, _S.REACTIVATED.value)


class LifecycleFold:
    """Users' activity and lifecycle states, and the changes of state published."""

    def __init__(self, state: FoldState, timers: DeadlineQueue, segments: Membership) -> None:
        self._state = state
        self._timers = timers
        self._segments = segments

    def observe(self, user: User, event: EventTracked, lp: LifecyclePolicy, position: int) -> None:
        """Fold an event of the user into their activity and re-evaluate their state (unless
        it is too late to count, or cannot change it)."""
        when = event.event_time_us
        now = self._state.now_us
        at = max(now, when)
        if when < now - lp.late_limit_days * DAY_US:
            return  # too late: it no longer changes lifecycle
        if event.name in lp.churn_events:
            if user.churn_event_us is None or when > user.churn_event_us:
                user.churn_event_us = when
        else:
            last = user.last_active_us
            # Was the user dormant or churned when this happened? Only possible after
            # a long enough silence, or an explicit churn event.
            if last is not None and (
                user.churn_event_us is not None
                or when - last >= lifecycle.dormant_after_us(user, lp)
            ):
                before, _ = lifecycle.classify(user, when, lp)
                if before in _DORMANT_OR_CHURNED and (
                    user.returned_us is None or when > user.returned_us
                ):
                    user.returned_us = when
            if user.first_active_us is None or when < user.first_active_us:
                user.first_active_us = when
            if last is None or when > last:
                user.last_active_us = when
            if user.add_active_day(day_of(when)):
                user.usual_gap_days = lifecycle.usual_gap_days(user, lp) or 0.0
            elif _unchanged_by(user, when, at):
                # Another event on a known active day, before any pending state change:
                # only the dormancy deadline moves (later), the state cannot change.
                user.deadline_us = lifecycle.next_deadline(user, at, lp)
                if user.deadline_us is not None:
                    self._timers.schedule(user.key, user.deadline_us)
                return
        self.evaluate(user, at, position, cause=EVENT, event=event)

    def evaluate(
        self,
        user: User,
        at: int,
        position: int,
        *,
        cause: str,
        event: EventTracked | UserIdentified | CauseEvent | None = None,
        deadline_us: int | None = None,
    ) -> None:
        """Classify the user at `at`; publish a change of state; queue their next deadline."""
        lp = self._state.policies(user.app_id).lifecycle
        state, since = lifecycle.classify(user, at, lp)
        old_state, old_since = user.state, user.since_us
        # A late event that happened before the current state began shows that state
        # began on wrong premises: the change it causes is a correction.
        late = (
            event is not None
            and old_state != _NONE
            and old_since is not None
            and event.event_time_us < old_since
        )
        if since is None:
            # A continuing state (active, loyal): from now, or, when correcting, from
            # when the wrong state had begun.
            since = old_since if late and old_since is not None else at
        changes = self._state.changes
        if state != old_state:
            changes.emit(
                user,
                LIFECYCLE,
                old_state,
                state,
                LATE_EVENT if late else cause,
                since,
                position,
                self._state.now_us,
                event=event,
                deadline_us=deadline_us,
                correction=late,
                corrected_since_us=old_since if late else None,
            )
            user.since_us = since
        elif since != old_since and state in _DATED:
            if late and state in _DORMANT_OR_CHURNED:
                # Same state, but it began later than published: set the record straight.
                changes.emit(
                    user,
                    LIFECYCLE,
                    old_state,
                    state,
                    LATE_EVENT,
                    since,
                    position,
                    self._state.now_us,
                    event=event,
                    correction=True,
                    corrected_since_us=old_since,
                )
            user.since_us = since
        user.state = state
        if state != old_state:
            self._segments.use_changed(user, USES_LIFECYCLE, at, position, cause=cause, event=event)
        deadline = lifecycle.next_deadline(user, at, lp)
        user.deadline_us = deadline
        if deadline is not None:
            self._timers.schedule(user.key, deadline)
        changes.users.add(user.key)


def _unchanged_by(user: User, when: int, at: int) -> bool:
    """True if re-evaluating the user at `at` must give the state they are in (the event
    added no active day, no churn event is pending, and nothing was due yet)."""
    return (
        user.state in _LIVELY
        and user.churn_event_us is None
        and user.deadline_us is not None
        and at < user.deadline_us
        and user.since_us is not None
        and when >= user.since_us
    )
