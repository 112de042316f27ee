"""The projector's fold: log events in, user state and changes out. No I/O.

Time is the recorded clock: it advances only with ClockTicked events from the
log, so replaying the log replays every inactivity transition at the same
place. Within one tick, event-driven evaluations use the event's own time.

`Engine` is the facade: it routes each log event to the concerns that fold it,
each in a module of its own: identity.py (keys, aliases, anonymous merges),
lifecycle_fold.py, rfm_fold.py, segments/membership.py and segments/versions.py,
over the shared fold_state.py, with the deadlines of deadlines.py; what they
produce is collected by changeset.py and handed over by `drain`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

from services.eventlog.events import ClockTicked, EventTracked, UserErased, UserIdentified
from services.eventlog.partition_events import (
    AnonymousHandedOver,
    AnonymousLinked,
    RfmCutPointsRecorded,
)
from services.eventlog.segments import Segment
from services.projector.domain import location
from services.projector.domain.changes import TIME
from services.projector.domain.changeset import ChangeSet, Drained, UserKey
from services.projector.domain.deadlines import Due, Timers, catch_up
from services.projector.domain.erasure import Erasure
from services.projector.domain.fold_state import FoldState, PolicySource, policy_source
from services.projector.domain.history_mode import HistoryMode
from services.projector.domain.identity import Identity
from services.projector.domain.lifecycle_fold import LifecycleFold
from services.projector.domain.policy import AppPolicy
from services.projector.domain.rfm_fold import AppState, RfmFold
from services.projector.domain.segments import live
from services.projector.domain.segments.compile import USES_FIRST_SEEN, USES_PROFILE
from services.projector.domain.segments.membership import NEW_USER, Membership
from services.projector.domain.segments.versions import (
    BuildHistory,
    BuildRequest,
    Built,
    Versions,
)
from services.projector.domain.user import User


class Engine:
    """The fold of one log: apply its events in order, drain what they changed per batch."""

    def __init__(
        self,
        policies: PolicySource | AppPolicy | None = None,
        now_us: int = 0,
        facts: bool = False,
        *,
        require_builds: bool = False,
        local: Callable[[str, str], bool] | None = None,
        rfm_recorded: bool = False,
    ) -> None:
        """`facts`: keep the facts history queries read (the projector does). With
        `require_builds` (the projector, whose log has history before its segment
        definitions), each Segment.Built must come through `merge_build` with its build, and
        `apply` refuses one; without (logs whose segments are all defined before any event,
        as in unit tests), `apply` merges it as an empty build. `local(app, user key)`: whether
        a user belongs to this log (a partition folds only its own; default: everyone).
        `rfm_recorded`: RFM cut points come recorded in the log (a partition's log)."""
        self._changes = ChangeSet(keep_facts=facts)
        state = self._state = FoldState(policy_source(policies), self._changes, now_us)
        if local is not None:
            state.local = local
        self._timers = Timers(state.users)
        self._segments = Membership(state, self._timers.segments)
        self._lifecycle = LifecycleFold(state, self._timers.lifecycle, self._segments)
        self._rfm = RfmFold(state, self._segments, recorded=rfm_recorded)
        self._identity = Identity(state, self._lifecycle, self._rfm, self._segments)
        self._versions = Versions(state, self._identity, self._segments)
        self._history = HistoryMode(state, self._timers, self._rfm, self._fire)
        self._erasure = Erasure(state, self._segments)
        self._require_builds = require_builds

    # ---- the state -----------------------------------------------------------------------

    @property
    def now_us(self) -> int:
        """The recorded clock."""
        return self._state.now_us

    @now_us.setter
    def now_us(self, value: int) -> None:
        self._state.now_us = value

    @property
    def users(self) -> dict[UserKey, User]:
        return self._state.users

    @property
    def apps(self) -> dict[str, AppState]:
        return self._rfm.apps

    @property
    def aliases(self) -> dict[tuple[str, str], str]:
        return self._identity.aliases

    @property
    def segments(self) -> dict[str, live.AppSegments]:
        return self._state.segments

    # ---- loading -------------------------------------------------------------------------

    def load_user(self, user: User) -> None:
        self._state.users[user.key] = user
        self._timers.load(user)
        self._rfm.load_user(user)

    def load_app(self, app_id: str, data: dict[str, Any]) -> None:
        self._rfm.load_app(app_id, data)
        self._history.load(app_id, data.get("history"))

    def load_alias(self, app_id: str, anonymous_id: str, user_id: str) -> None:
        self._identity.aliases[(app_id, anonymous_id)] = user_id

    def load_segments(self, app_id: str, data: dict[str, Any]) -> None:
        self._state.segments[app_id] = live.AppSegments.from_dict(data)

    def export_state(self) -> dict[str, Any]:
        """The whole state, as the store keeps it (a deep copy: for tests and snapshots)."""
        return copy.deepcopy(
            {
                "now_us": self.now_us,
                "users": [u.to_dict() for _, u in sorted(self.users.items())],
                "apps": {a: s.to_dict() for a, s in sorted(self.apps.items())},
                "aliases": [[a, anon, u] for (a, anon), u in sorted(self.aliases.items())],
                "segments": {a: s.to_dict() for a, s in sorted(self.segments.items())},
            }
        )

    @classmethod
    def from_state(
        cls, state: dict[str, Any], policies: PolicySource | AppPolicy | None = None
    ) -> Engine:
        engine = cls(policies, now_us=state["now_us"])
        for data in state["users"]:
            engine.load_user(User.from_dict(data))
        for app_id, data in state["apps"].items():
            engine.load_app(app_id, data)
        for app_id, anonymous_id, user_id in state["aliases"]:
            engine.load_alias(app_id, anonymous_id, user_id)
        for app_id, data in state.get("segments", {}).items():
            engine.load_segments(app_id, data)
        return engine

    # ---- applying the log ----------------------------------------------------------------

    def apply(self, event: object, position: int) -> None:
        """Fold one log event (by its app's mode: history_mode.py)."""
        self._history.fold(event, position, self._apply)

    def _apply(self, event: object, position: int) -> None:
        if isinstance(event, EventTracked):
            self._track(event, position)
        elif isinstance(event, ClockTicked):
            self.advance(event.tick_time_us, position)
        elif isinstance(event, UserIdentified):
            self._identify(event, position)
        elif isinstance(event, Segment.Defined | Segment.Redefined):
            self._versions.define(event, position)
        elif isinstance(event, Segment.Built):
            if self._require_builds:
                msg = f"a Segment.Built (position {position}) needs its build: merge_build"
                raise TypeError(msg)
            self.merge_build(event, position, {})
        elif isinstance(event, Segment.Archived):
            self._versions.archive(event, position)
        elif isinstance(event, AnonymousLinked):
            self._identity.link_elsewhere(event, position)
        elif isinstance(event, AnonymousHandedOver):
            self._identity.take_handed_over(event, position)
        elif isinstance(event, UserErased):
            self._erasure.erase(event, position)
        elif isinstance(event, RfmCutPointsRecorded):
            self._rfm.cut_points_recorded(
                event.app_id, event.quintiles, event.tick_time_us, position
            )

    def apply_all(self, items: Iterable[tuple[object, int]]) -> None:
        for event, position in items:
            self.apply(event, position)

    def build_wanted(self, event: Built) -> BuildRequest | None:
        """What build `event` stands for (the caller loads it for `merge_build`); None if
        its version is superseded or archived (there is nothing to load)."""
        return self._versions.wanted(event)

    def merge_build(self, event: Built, position: int, history: BuildHistory) -> None:
        """Apply a Segment.Built with its build, loaded as `build_wanted` asked: join it to
        what was tracked live since the definition and switch the version on."""
        self._versions.merge(event, position, history)

    def advance(self, to_us: int, position: int) -> None:
        """Move the recorded clock forward and fire every deadline it passed."""
        if to_us <= self._state.now_us:
            return
        self._state.now_us = to_us
        self._changes.tick_fact(to_us, position)
        users = self._state.users
        for due, key, deadline in self._timers.due(to_us):
            self._fire(due, users[key], deadline, position)
        self._rfm.recompute_due(to_us, position)

    def drain(self) -> Drained:
        """Hand over everything changed since the last drain, and forget it."""
        return self._changes.drain(self.users, self.apps, self.aliases, self.segments, self.now_us)

    def _fire(self, due: Due, user: User, deadline: int, position: int) -> None:
        if due is Due.LIFECYCLE:
            self._lifecycle.evaluate(user, deadline, position, cause=TIME, deadline_us=deadline)
        else:
            self._segments.due(user, deadline, position)

    def _catch_up(self, key: UserKey, when: int, position: int) -> None:
        """Before an event from ahead of the recorded clock (at `when`): deadlines.catch_up."""
        for due, user, deadline in catch_up(self._state.users.get(key), when):
            self._fire(due, user, deadline, position)

    def forwarded(self) -> UserKey | None:
        """After `apply`: the user of another partition the event was for (it was not
        folded here; the caller sends it on), else None."""
        key, self._changes.forward = self._changes.forward, None
        return key

    def _track(self, event: EventTracked, position: int) -> None:
        key = self._identity.key(event.app_id, event.user_id, event.anonymous_id)
        if self._identity.forwarded(key):
            return
        if event.event_time_us > self._state.now_us:
            self._catch_up(key, event.event_time_us, position)
        segments = self._state.segments.get(event.app_id)
        if segments is None or (not segments.specs and not segments.active):
            self._track_user(key, event, position)
        else:
            uses = self._segments.defer(key)
            try:
                user = self._track_user(key, event, position)
                self._segments.after_event(user, segments, event, uses, position)
            finally:
                self._segments.stop_deferring()
        self._changes.event_fact(event, key[1], position)

    def _track_user(self, key: UserKey, event: EventTracked, position: int) -> User:
        user = self._state.user(key)
        when = event.event_time_us
        first_seen = user.first_seen_us
        user.seen(when)
        if user.first_seen_us != first_seen:
            self._segments.note(USES_FIRST_SEEN)
        user.count_event(event.name)
        if event.context and location.observe_place(user, event.context, when):
            self._segments.note(USES_PROFILE)
        if user.event_count == 1:
            self._segments.note(NEW_USER)
        policy = self._state.policies(event.app_id)
        self._lifecycle.observe(user, event, policy.lifecycle, position)
        if event.name == policy.rfm.purchase_event:
            self._rfm.purchased(user, event, position)
        return user

    def _identify(self, event: UserIdentified, position: int) -> None:
        key = self._identity.key(event.app_id, event.user_id, event.anonymous_id)
        if self._identity.forwarded(key):
            return
        if event.event_time_us > self._state.now_us:
            self._catch_up(key, event.event_time_us, position)
        segments = self._state.segments.get(event.app_id)
        if segments is None or not segments.active:
            self._identity.identify(event, position)
            return
        new = () if key in self._state.users else (NEW_USER,)  # negations may hold
        uses = self._segments.defer(key, (USES_PROFILE, *new))
        try:
            user = self._identity.identify(event, position)
        finally:
            self._segments.stop_deferring()
        self._segments.after_identify(user, segments, event, uses, position)
