"""The projector's fold: log events in, user state and changes out. No I/O.

Time is the recorded clock: it advances only with ClockTicked events from the
log, so replaying the log replays every inactivity transition at the same
place. Within one tick, event-driven evaluations use the event's own time.
"""

from __future__ import annotations

import copy
import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from services.eventlog.events import ClockTicked, EventTracked, UserIdentified
from services.eventlog.segments import Segment
from services.eventlog.vocabulary import LifecycleState, RfmGroup
from services.projector.domain import lifecycle, location, rfm
from services.projector.domain.changes import (
    EVENT,
    LATE_EVENT,
    LIFECYCLE,
    MEMBERSHIP,
    RECOMPUTATION,
    REDEFINITION,
    RFM,
    TIME,
    Change,
    change_id,
)
from services.projector.domain.policy import DAY_US, AppPolicy
from services.projector.domain.rfm_index import RfmIndex
from services.projector.domain.segments import dating, live
from services.projector.domain.segments import trackers as tr
from services.projector.domain.segments.compile import (
    USES_FIRST_SEEN,
    USES_LIFECYCLE,
    USES_PROFILE,
    USES_RFM,
    compile_segment,
)
from services.projector.domain.segments.definition import parse
from services.projector.domain.user import User, day_of

ANONYMOUS_PREFIX = "anonymous:"
# Pseudo-use: a user's first event re-evaluates every segment (negations may hold).
_NEW_USER = "new_user"
# Facts rows of clock ticks (app "" and user ""): the recorded clock at any position.
TICK_FACT = "$tick"
_LIVELY = frozenset(
    {LifecycleState.NEW, LifecycleState.ACTIVE, LifecycleState.LOYAL, LifecycleState.REACTIVATED}
)
UserKey = tuple[str, str]
# Deadlines of one user fired before one event of theirs, at the most (each moves them on).
_MAX_CATCH_UP = 10_000
_DORMANT_OR_CHURNED = (LifecycleState.DORMANT, LifecycleState.CHURNED)
# States that begin at a time of their own (a new `since` is news).
_DATED = (*_DORMANT_OR_CHURNED, LifecycleState.NEW, LifecycleState.REACTIVATED)
PolicySource = Callable[[str], AppPolicy]


def _earliest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _latest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


@dataclass(frozen=True)
class CauseEvent:
    """The event behind a change made after it (a purchase, scored at the next tick)."""

    event_id: str
    name: str
    event_time_us: int


@dataclass
class AppState:
    quintiles: rfm.Quintiles = field(default_factory=rfm.Quintiles)
    # Index of the recompute interval of the last RFM recomputation.
    rfm_slot: int = 0
    purchasers: set[str] = field(default_factory=set)
    # The UTC day whose window the purchasers' values count (None: no purchase yet).
    rfm_day: int | None = None
    # Purchasers whose values moved since the last recomputation, and why:
    # user id -> [event id, event name, event time].
    pending: dict[str, list[Any]] = field(default_factory=dict)
    # The purchasers' values, sorted (derived from the users; rebuilt after loading).
    index: RfmIndex | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "quintiles": self.quintiles.to_dict(),
            "rfm_slot": self.rfm_slot,
            "rfm_day": self.rfm_day,
            "pending": {user: self.pending[user] for user in sorted(self.pending)},
        }


@dataclass
class Drained:
    """What changed since the last drain: the unit the store commits at once."""

    changes: list[Change]
    users: list[User]
    # Users whose traits, contact, consent or location changed (a subset of users).
    profile_users: list[User]
    deleted_users: list[UserKey]
    apps: dict[str, AppState]
    aliases: dict[tuple[str, str], str]
    now_us: int
    # Apps whose segment definitions or versions changed.
    segment_apps: dict[str, live.AppSegments] = field(default_factory=dict)
    # Anonymous users merged into identified ones: (app, anonymous key, user id).
    merges: list[tuple[str, str, str]] = field(default_factory=list)
    # Facts for history queries: (app, user, name, event time, position, properties).
    facts: list[tuple[str, str, str, int, int, dict[str, Any]]] = field(default_factory=list)
    # What happened to segment definitions, in order: ("defined", app, id, version,
    # position, now, event), ("active", app, id, version, position, now), ("archived", ...).
    segment_records: list[tuple[Any, ...]] = field(default_factory=list)
    # Builds merged in (app, segment, version): their stored rows can go.
    consumed_builds: list[tuple[str, str, int]] = field(default_factory=list)


class Engine:
    def __init__(
        self,
        policies: PolicySource | AppPolicy | None = None,
        now_us: int = 0,
        builds: live.BuildSource | None = None,
        facts: bool = False,
    ) -> None:
        if policies is None or isinstance(policies, AppPolicy):
            fixed = policies or AppPolicy()
            self.policies: PolicySource = lambda _app: fixed
        else:
            self.policies = policies
        self.now_us = now_us
        self.users: dict[UserKey, User] = {}
        self.apps: dict[str, AppState] = {}
        self.aliases: dict[tuple[str, str], str] = {}
        self._heap: list[tuple[int, str, str]] = []
        # Earliest heap entry per user. Entries are pushed only when a deadline moves
        # earlier; one that fires early is re-armed at the user's current deadline.
        self._queued: dict[UserKey, int] = {}
        self._changes: list[Change] = []
        self._dirty: set[UserKey] = set()
        self._dirty_profiles: set[UserKey] = set()
        self._deleted: set[UserKey] = set()
        self._dirty_apps: set[str] = set()
        self._dirty_aliases: set[tuple[str, str]] = set()
        self.segments: dict[str, live.AppSegments] = {}
        self.builds: live.BuildSource = builds or live.NoHistory()
        self._seg_heap: list[tuple[int, str, str]] = []
        self._seg_queued: dict[UserKey, int] = {}
        self._dirty_segments: set[str] = set()
        self._merges: list[tuple[str, str, str]] = []
        self._keep_facts = facts
        self._segment_records: list[tuple[Any, ...]] = []
        self._consumed_builds: list[tuple[str, str, int]] = []
        self._facts: list[tuple[str, str, str, int, int, dict[str, Any]]] = []

    # ---- loading -------------------------------------------------------------------------

    def load_user(self, user: User) -> None:
        self.users[user.key] = user
        if user.deadline_us is not None:
            self._schedule(user, user.deadline_us)
        if user.segment_deadline_us is not None:
            self._schedule_segments(user, user.segment_deadline_us)
        if user.purchases:
            self._app(user.app_id).purchasers.add(user.user_id)

    def load_app(self, app_id: str, data: dict[str, Any]) -> None:
        app = self._app(app_id)
        app.quintiles = rfm.Quintiles.from_dict(data["quintiles"])
        app.rfm_slot = data["rfm_slot"]
        app.rfm_day = data.get("rfm_day")
        app.pending = dict(data.get("pending", {}))
        app.index = None

    def load_alias(self, app_id: str, anonymous_id: str, user_id: str) -> None:
        self.aliases[(app_id, anonymous_id)] = user_id

    def load_segments(self, app_id: str, data: dict[str, Any]) -> None:
        self.segments[app_id] = live.AppSegments.from_dict(data)

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
        if isinstance(event, EventTracked):
            self._track(event, position)
        elif isinstance(event, ClockTicked):
            self.advance(event.tick_time_us, position)
        elif isinstance(event, UserIdentified):
            self._identify(event, position)
        elif isinstance(event, Segment.Defined | Segment.Redefined):
            self._segment_defined(event, position)
        elif isinstance(event, Segment.Built):
            self._segment_built(event, position)
        elif isinstance(event, Segment.Archived):
            self._segment_archived(event, position)

    def apply_all(self, items: Iterable[tuple[object, int]]) -> None:
        for event, position in items:
            self.apply(event, position)

    def advance(self, to_us: int, position: int) -> None:
        """Move the recorded clock forward and fire every deadline it passed."""
        if to_us <= self.now_us:
            return
        self.now_us = to_us
        if self._keep_facts:
            self._facts.append(("", "", TICK_FACT, to_us, position, {}))
        heap, queued = self._heap, self._queued
        seg_heap, seg_queued = self._seg_heap, self._seg_queued
        while True:
            next_life = heap[0][0] if heap and heap[0][0] <= to_us else None
            next_seg = seg_heap[0][0] if seg_heap and seg_heap[0][0] <= to_us else None
            if next_life is None and next_seg is None:
                break
            if next_seg is None or (next_life is not None and next_life <= next_seg):
                entry, app_id, user_id = heapq.heappop(heap)
                key = (app_id, user_id)
                if queued.get(key) != entry:
                    continue  # an earlier entry for this user exists or existed
                del queued[key]
                user = self.users.get(key)
                if user is None or user.deadline_us is None:
                    continue
                if user.deadline_us > entry:
                    self._schedule(user, user.deadline_us)  # the deadline moved on: re-arm
                    continue
                deadline = user.deadline_us
                self._evaluate(user, deadline, position, cause=TIME, deadline_us=deadline)
            else:
                entry, app_id, user_id = heapq.heappop(seg_heap)
                key = (app_id, user_id)
                if seg_queued.get(key) != entry:
                    continue
                del seg_queued[key]
                user = self.users.get(key)
                if user is None or user.segment_deadline_us is None:
                    continue
                if user.segment_deadline_us > entry:
                    self._schedule_segments(user, user.segment_deadline_us)
                    continue
                self._segments_due(user, user.segment_deadline_us, position)
        for app_id in sorted(self.apps):
            app = self.apps[app_id]
            slot = to_us // (self.policies(app_id).rfm.recompute_minutes * 60_000_000)
            if slot > app.rfm_slot:
                app.rfm_slot = slot
                self._dirty_apps.add(app_id)
                if app.purchasers or app.pending:
                    self._recompute_rfm(app_id, to_us, position)

    def _catch_up(self, key: UserKey, when: int, position: int) -> None:
        """Before an event from ahead of the recorded clock (at `when`), fire its user's own
        deadlines before the event's time, in time order, each dated at its deadline: what
        happened to the user between the last tick and their event comes before it."""
        user = self.users.get(key)
        if user is None or not (
            (user.deadline_us is not None and user.deadline_us < when)
            or (user.segment_deadline_us is not None and user.segment_deadline_us < when)
        ):
            return
        for _ in range(_MAX_CATCH_UP):
            life = user.deadline_us
            seg = user.segment_deadline_us
            if life is not None and life < when and (seg is None or life <= seg):
                self._evaluate(user, life, position, cause=TIME, deadline_us=life)
            elif seg is not None and seg < when:
                self._segments_due(user, seg, position)
            else:
                return

    def _user_now(self, user: User, when: int) -> int:
        """Where a user's segments are judged on an event of theirs at `when`: the recorded
        clock, or the user's latest event time if that is ahead of it (never earlier than
        an evaluation already made for them)."""
        return max(self.now_us, when, user.last_seen_us or when)

    def _user_key(self, app_id: str, user_id: str, anonymous_id: str) -> UserKey:
        if user_id:
            return (app_id, user_id)
        mapped = self.aliases.get((app_id, anonymous_id))
        if mapped is not None:
            return (app_id, mapped)
        return (app_id, ANONYMOUS_PREFIX + anonymous_id)

    def _user(self, key: UserKey) -> User:
        user = self.users.get(key)
        if user is None:
            user = self.users[key] = User(app_id=key[0], user_id=key[1])
        self._dirty.add(key)
        return user

    def _app(self, app_id: str) -> AppState:
        app = self.apps.get(app_id)
        if app is None:
            app = self.apps[app_id] = AppState()
        return app

    def _track(self, event: EventTracked, position: int) -> None:
        key = self._user_key(event.app_id, event.user_id, event.anonymous_id)
        if event.event_time_us > self.now_us:
            self._catch_up(key, event.event_time_us, position)
        segments = self.segments.get(event.app_id)
        if segments is None or (not segments.specs and not segments.active):
            self._track_user(event, position)
        else:
            self._pending_uses = set()
            self._pending_user = key
            user = self._track_user(event, position)
            self._segments_after_event(user, segments, event, position)
            self._pending_uses = None
            self._pending_user = None
        if self._keep_facts:
            props: dict[str, Any] = dict(event.properties)
            if event.time_properties:
                props["$times"] = event.time_properties
            if event.context:
                props["$context"] = event.context
            self._facts.append(
                (event.app_id, key[1], event.name, event.event_time_us, position, props)
            )

    # While an event of this user is applied, what changed about them is collected
    # here and their segments are evaluated once, at the end.
    _pending_uses: set[str] | None = None
    _pending_user: UserKey | None = None

    def _track_user(self, event: EventTracked, position: int) -> User:
        key = self._user_key(event.app_id, event.user_id, event.anonymous_id)
        user = self._user(key)
        policy = self.policies(event.app_id)
        lp = policy.lifecycle
        when = event.event_time_us
        first_seen = user.first_seen_us
        user.seen(when)
        if user.first_seen_us != first_seen:
            self._use(USES_FIRST_SEEN)
        user.count_event(event.name)
        context = event.context
        if context and ("country" in context or "latitude" in context or "city" in context):
            seen = location.observed(context)
            if seen:
                place = location.fold(user.place, user.place_us, seen, when)
                place_us = when if user.place_us is None else max(user.place_us, when)
                if place != user.place or (
                    user.location
                    and location.place_first(user.place_us, user.location_us)
                    != location.place_first(place_us, user.location_us)
                ):
                    where = location.of_user(user)
                    user.place, user.place_us = place, place_us
                    if location.of_user(user) != where:
                        self._use(USES_PROFILE)
                user.place_us = place_us
        if user.event_count == 1:
            self._use(_NEW_USER)
        at = max(self.now_us, when)
        in_time = when >= self.now_us - lp.late_limit_days * DAY_US
        if in_time:
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
                elif self._unchanged_by(user, when, at):
                    # Another event on a known active day, before any pending state change:
                    # only the dormancy deadline moves (later), the state cannot change.
                    user.deadline_us = lifecycle.next_deadline(user, at, lp)
                    if user.deadline_us is not None:
                        self._schedule(user, user.deadline_us)
                    if event.name == policy.rfm.purchase_event:
                        self._purchase(user, event, position)
                    return user
            self._evaluate(user, at, position, cause=EVENT, event=event)
        if event.name == policy.rfm.purchase_event:
            self._purchase(user, event, position)
        return user

    @staticmethod
    def _unchanged_by(user: User, when: int, at: int) -> bool:
        """True if re-evaluating the user at `at` must give the state they are in (the
        event added no active day, no churn event is pending, and nothing was due yet)."""
        return (
            user.state in _LIVELY
            and user.churn_event_us is None
            and user.deadline_us is not None
            and at < user.deadline_us
            and user.since_us is not None
            and when >= user.since_us
        )

    def _identify(self, event: UserIdentified, position: int) -> None:
        if event.event_time_us > self.now_us:
            key = self._user_key(event.app_id, event.user_id, event.anonymous_id)
            self._catch_up(key, event.event_time_us, position)
        segments = self.segments.get(event.app_id)
        if segments is None or not segments.active:
            self._identify_user(event, position)
            return
        self._pending_uses = {USES_PROFILE}
        self._pending_user = self._user_key(event.app_id, event.user_id, event.anonymous_id)
        if self._pending_user not in self.users:
            self._pending_uses.add(_NEW_USER)  # a new user: negations may hold
        user = self._identify_user(event, position)
        uses, self._pending_uses, self._pending_user = self._pending_uses, None, None
        self._reevaluate(
            user,
            live.affected(segments, (), uses, everything=_NEW_USER in uses),
            self._user_now(user, event.event_time_us),
            position,
            cause=EVENT,
            event=event,
            since_us=event.event_time_us,
        )

    def _identify_user(self, event: UserIdentified, position: int) -> User:
        app_id = event.app_id
        key = self._user_key(app_id, event.user_id, event.anonymous_id)
        user = self._user(key)
        self._dirty_profiles.add(key)
        user.traits.update(event.traits)
        user.time_traits.update(event.time_traits)
        user.contact.update(event.contact)
        user.consents.update(event.consents)
        if event.timezone:
            user.timezone = event.timezone
        seen = location.observed(event.location) if event.location else {}
        if seen:
            user.location = location.fold(
                user.location, user.location_us, seen, event.event_time_us
            )
            if user.location_us is None or event.event_time_us > user.location_us:
                user.location_us = event.event_time_us
        if event.user_id and event.anonymous_id:
            alias = (app_id, event.anonymous_id)
            if self.aliases.get(alias) != event.user_id:
                self.aliases[alias] = event.user_id
                self._dirty_aliases.add(alias)
            anonymous = self.users.pop((app_id, ANONYMOUS_PREFIX + event.anonymous_id), None)
            if anonymous is not None:
                at = max(self.now_us, event.event_time_us)
                self._leave_all_segments(anonymous, at, position, event)
                self._merge(anonymous, user)
                self._use(_NEW_USER)
                self._evaluate(user, at, position, cause=EVENT, event=event)
                if user.purchases:
                    self._purchase(user, event, position)
        return user

    def _merge(self, anonymous: User, user: User) -> None:
        """Fold an anonymous history into the user it turned out to be."""
        key = anonymous.key
        self._dirty.discard(key)
        self._deleted.add(key)
        app = self._app(anonymous.app_id)
        if anonymous.user_id in app.purchasers:
            app.purchasers.discard(anonymous.user_id)
            app.pending.pop(anonymous.user_id, None)
            self._rfm_index(anonymous.app_id)[0].put(anonymous.user_id, None)
        for time in (anonymous.first_seen_us, anonymous.last_seen_us):
            if time is not None:
                user.seen(time)
        user.first_active_us = _earliest(user.first_active_us, anonymous.first_active_us)
        user.last_active_us = _latest(user.last_active_us, anonymous.last_active_us)
        for day in anonymous.active_days:
            user.add_active_day(day)
        lp = self.policies(user.app_id).lifecycle
        user.usual_gap_days = lifecycle.usual_gap_days(user, lp) or 0.0
        for name, count in anonymous.event_counts.items():
            user.event_counts[name] = user.event_counts.get(name, 0) + count
        user.event_count += anonymous.event_count
        for day, (bought, amount) in anonymous.purchases.items():
            mine = user.purchases.setdefault(day, [0.0, 0.0])
            mine[0] += bought
            mine[1] += amount
        user.last_purchase_us = _latest(user.last_purchase_us, anonymous.last_purchase_us)
        for name, value in anonymous.traits.items():
            user.traits.setdefault(name, value)
        location.merge_into(user, anonymous)
        if anonymous.trackers:
            specs = self.segments[user.app_id].specs if user.app_id in self.segments else {}
            for tracker_key, state in anonymous.trackers.items():
                spec = specs.get(tracker_key)
                if spec is not None:
                    user.trackers[tracker_key] = tr.merge(
                        spec, state, user.trackers.get(tracker_key)
                    )
        self._merges.append((user.app_id, anonymous.user_id, user.user_id))

    # ---- lifecycle -----------------------------------------------------------------------

    def _evaluate(
        self,
        user: User,
        at: int,
        position: int,
        *,
        cause: str,
        event: EventTracked | UserIdentified | None = None,
        deadline_us: int | None = None,
    ) -> None:
        lp = self.policies(user.app_id).lifecycle
        state, since = lifecycle.classify(user, at, lp)
        old_state, old_since = user.state, user.since_us
        # A late event that happened before the current state began shows that state
        # began on wrong premises: the change it causes is a correction.
        late = (
            event is not None
            and old_state != LifecycleState.NONE
            and old_since is not None
            and event.event_time_us < old_since
        )
        if since is None:
            # A continuing state (active, loyal): from now, or, when correcting, from
            # when the wrong state had begun.
            since = old_since if late and old_since is not None else at
        if state != old_state:
            self._emit(
                user,
                LIFECYCLE,
                old_state,
                state,
                LATE_EVENT if late else cause,
                since,
                position,
                event=event,
                deadline_us=deadline_us,
                correction=late,
                corrected_since_us=old_since if late else None,
            )
            user.since_us = since
        elif since != old_since and state in _DATED:
            if late and state in _DORMANT_OR_CHURNED:
                # Same state, but it began later than published: set the record straight.
                self._emit(
                    user,
                    LIFECYCLE,
                    old_state,
                    state,
                    LATE_EVENT,
                    since,
                    position,
                    event=event,
                    correction=True,
                    corrected_since_us=old_since,
                )
            user.since_us = since
        user.state = state
        if state != old_state:
            self._lifecycle_moved(user, at, position, cause, event)
        deadline = lifecycle.next_deadline(user, at, lp)
        user.deadline_us = deadline
        if deadline is not None:
            self._schedule(user, deadline)
        self._dirty.add(user.key)

    def _schedule(self, user: User, deadline: int) -> None:
        key = user.key
        current = self._queued.get(key)
        if current is None or deadline < current:
            self._queued[key] = deadline
            heapq.heappush(self._heap, (deadline, user.app_id, user.user_id))

    # ---- RFM -----------------------------------------------------------------------------

    def _purchase(self, user: User, cause: EventTracked | UserIdentified, position: int) -> None:
        """The user's purchases changed (a purchase, or an anonymous history merged in):
        their values move in the app's index now; their scores, and those of everyone the
        move of the cut points touches, at the next recomputation (so no score is ever
        published from cut points that do not count it)."""
        policy = self.policies(user.app_id).rfm
        if isinstance(cause, EventTracked):
            raw = cause.properties.get(policy.amount_property, 0.0)
            amount = (
                float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else 0.0
            )
            entry = user.purchases.setdefault(day_of(cause.event_time_us), [0.0, 0.0])
            entry[0] += 1
            entry[1] += amount
            if user.last_purchase_us is None or cause.event_time_us > user.last_purchase_us:
                user.last_purchase_us = cause.event_time_us
        app = self._app(user.app_id)
        index, first = self._rfm_index(user.app_id)
        app.purchasers.add(user.user_id)
        index.put(user.user_id, rfm.values_in(user, first))
        app.pending[user.user_id] = [
            cause.event_id,
            getattr(cause, "name", ""),
            cause.event_time_us,
        ]
        self._dirty_apps.add(user.app_id)

    def _rfm_index(self, app_id: str) -> tuple[RfmIndex, int]:
        """The app's index of purchasers' values (built from the users after loading), and
        the first day of the window it counts."""
        app = self._app(app_id)
        if app.rfm_day is None:
            app.rfm_day = day_of(self.now_us)
            self._dirty_apps.add(app_id)
        first = rfm.first_day(app.rfm_day, self.policies(app_id).rfm)
        if app.index is None:
            app.index = RfmIndex()
            app.index.rebuild(
                {u: rfm.values_in(self.users[(app_id, u)], first) for u in app.purchasers}
            )
        return app.index, first

    def _recompute_rfm(self, app_id: str, at: int, position: int) -> None:
        """Cut points of all the app's purchasers as of the tick at `at`, and every score
        they change: afterwards each purchaser's scores equal a fresh quintile computation
        over all purchases folded so far (the window moves on with the UTC day)."""
        app = self._app(app_id)
        index = self._rfm_index(app_id)[0]
        day = day_of(at)
        expired: list[str] = []
        if app.rfm_day != day:  # the window moved on: some purchases may have left it
            app.rfm_day = day
            first = rfm.first_day(day, self.policies(app_id).rfm)
            for user_id in sorted(app.purchasers):
                purchaser = self.users[(app_id, user_id)]
                if purchaser.purchases and min(purchaser.purchases) < first:
                    rfm.forget_before(purchaser, first)
                    index.put(user_id, rfm.values_in(purchaser, first))
                    expired.append(user_id)
        quintiles = index.quintiles()
        moved = index.moved(app.quintiles, quintiles)
        app.quintiles = quintiles
        self._dirty_apps.add(app_id)
        who = set(app.purchasers) if moved is None else moved
        who.update(app.pending, expired)
        for user_id in sorted(who):
            user = self.users.get((app_id, user_id))
            if user is None:
                continue  # merged into another user meanwhile
            why = app.pending.get(user_id)
            self._rescore(
                user,
                app,
                at,
                position,
                CauseEvent(*why) if why else None,
                index.values.get(user_id),
            )
        app.pending = {}

    def _rescore(
        self,
        user: User,
        app: AppState,
        at: int,
        position: int,
        cause: CauseEvent | None,
        values: rfm.RfmValues | None,
    ) -> None:
        """Score the user's `values` against the app's cut points at `at`. A change their own
        purchase caused is dated at it; one the cut points caused at `at`."""
        if values is None:
            scores: list[int] = []
            group = RfmGroup.NONE
            app.purchasers.discard(user.user_id)
        else:
            scores = app.quintiles.scores(values)
            group = rfm.group_of(*scores)
        raw = [values.last_purchase_us, values.purchases, values.amount] if values else []
        if scores != user.rfm_scores or raw != user.rfm_values:
            user.rfm_scores = scores
            user.rfm_values = raw
            self._dirty.add(user.key)
        if group != user.rfm_group:
            kind = EVENT if cause is not None else RECOMPUTATION
            effective = cause.event_time_us if cause is not None else at
            self._emit(
                user,
                RFM,
                user.rfm_group,
                group,
                kind,
                effective,
                position,
                event=cause,
                scores=(scores[0], scores[1], scores[2]) if scores else None,
                recency_days=values.recency_days(at) if values else 0.0,
                purchases=values.purchases if values else 0,
                amount=values.amount if values else 0.0,
            )
            user.rfm_group = group
            self._rfm_moved(user, at, position, kind, cause, effective)

    # ---- segments ------------------------------------------------------------------------

    def _use(self, use: str) -> None:
        """Note what changed about a user; inside an event, evaluation waits for its end."""
        if self._pending_uses is not None:
            self._pending_uses.add(use)

    def _deferred(self, user: User, use: str) -> bool:
        if self._pending_uses is not None and self._pending_user == user.key:
            self._pending_uses.add(use)
            return True
        return False

    def _lifecycle_moved(
        self, user: User, at: int, position: int, cause: str, event: object | None
    ) -> None:
        if self._deferred(user, USES_LIFECYCLE):
            return
        segments = self.segments.get(user.app_id)
        if segments is not None and segments.active:
            hit = live.affected(segments, (), (USES_LIFECYCLE,))
            if hit:
                self._reevaluate(user, hit, at, position, cause=cause, event=event)

    def _rfm_moved(
        self, user: User, at: int, position: int, cause: str, event: object | None, since: int
    ) -> None:
        segments = self.segments.get(user.app_id)
        if segments is not None and segments.active:
            hit = live.affected(segments, (), (USES_RFM,))
            if hit:
                at = self._user_now(user, at)
                self._reevaluate(
                    user, hit, at, position, cause=cause, event=event, since_us=min(since, at)
                )

    def _segments_after_event(
        self, user: User, segments: live.AppSegments, event: EventTracked, position: int
    ) -> None:
        uses = self._pending_uses or set()
        # Segments are judged by the recorded clock, or the user's own latest event if it is
        # ahead (windows only look back, so an event a little ahead of the last tick still
        # counts); the changes are dated when they took effect (from the event's time on).
        at = self._user_now(user, event.event_time_us)
        touched = live.observe_event(
            segments,
            user.trackers,
            event.name,
            event.event_time_us,
            event.properties,
            event.time_properties,
            event.context,
            self.now_us,
        )
        if touched:
            self._dirty.add(user.key)
        if _NEW_USER in uses:
            uses.add(USES_FIRST_SEEN)
        hit = live.affected(segments, touched, uses, everything=_NEW_USER in uses)
        if hit:
            self._reevaluate(
                user,
                hit,
                at,
                position,
                cause=EVENT,
                event=event,
                since_us=event.event_time_us,
            )

    def _reevaluate(
        self,
        user: User,
        candidates: set[str],
        at: int,
        position: int,
        *,
        cause: str,
        event: object | None = None,
        deadline_us: int | None = None,
        since_us: int | None = None,
    ) -> None:
        """Re-evaluate some active segments for a user (and whatever depends on them) at
        `at`. Changes are dated `at`, or, for a cause that took effect before (`since_us`,
        a late event), when the membership came to hold since then (dating.py); a segment
        that changes because one it refers to did is dated no earlier than that one."""
        segments = self.segments[user.app_id]
        rank = segments.rank
        # In dependency order (segments after those they refer to), each once; a segment
        # whose membership changed brings in those that refer to it.
        todo = sorted((s for s in candidates if s in rank), key=rank.__getitem__)
        queued = set(todo)
        due = user.segment_due
        floors: dict[str, int] = {}
        corrected: set[str] = set()  # segments that follow one whose change was a correction
        index = 0
        while index < len(todo):
            segment_id = todo[index]
            index += 1
            compiled = segments.active[segment_id]
            inside = compiled.member(user, at)
            if inside != (segment_id in user.memberships):
                lo = floors.get(segment_id, at if since_us is None else since_us)
                effective, correction = self._set_membership(
                    user,
                    segment_id,
                    compiled.version,
                    inside,
                    at if lo >= at else dating.settled_since(compiled, user, lo, at, inside),
                    position,
                    cause,
                    event,
                    deadline_us=deadline_us,
                    correction=segment_id in corrected,
                )
                for d in segments.dependents.get(segment_id, ()):
                    floors[d] = max(floors.get(d, effective), effective)
                    if correction:
                        corrected.add(d)
                here = rank[segment_id]
                more = [
                    d
                    for d in segments.dependents.get(segment_id, ())
                    if d not in queued and rank[d] > here
                ]
                if more:
                    queued.update(more)
                    todo[index:] = sorted([*todo[index:], *more], key=rank.__getitem__)
            if compiled.timed:
                when = compiled.boundary(user, at)
                if when is None:
                    due.pop(segment_id, None)
                else:
                    due[segment_id] = when
        next_due = min(due.values()) if due else None
        if next_due != user.segment_deadline_us:
            user.segment_deadline_us = next_due
            self._dirty.add(user.key)
        if next_due is not None:
            self._schedule_segments(user, next_due)

    def _segments_due(self, user: User, due: int, position: int) -> None:
        """A segment deadline passed: drop expired window entries, re-evaluate timed ones."""
        segments = self.segments.get(user.app_id)
        if segments is None:
            user.segment_deadline_us = None
            return
        ready = set()
        for segment_id, when in list(user.segment_due.items()):
            if segment_id not in segments.active:
                del user.segment_due[segment_id]  # archived or retired meanwhile
            elif when <= due:
                ready.add(segment_id)
        for segment_id in ready:
            for tracker_key, spec in segments.active[segment_id].trackers.items():
                state = user.trackers.get(tracker_key)
                if state is not None and tr.prune(spec, state, due) is None:
                    del user.trackers[tracker_key]
        user.segment_deadline_us = None
        self._dirty.add(user.key)
        self._reevaluate(user, ready, due, position, cause=TIME, deadline_us=due)

    def _schedule_segments(self, user: User, deadline: int) -> None:
        key = user.key
        current = self._seg_queued.get(key)
        if current is None or deadline < current:
            self._seg_queued[key] = deadline
            heapq.heappush(self._seg_heap, (deadline, user.app_id, user.user_id))

    def _set_membership(
        self,
        user: User,
        segment_id: str,
        version: int,
        inside: bool,
        at: int,
        position: int,
        cause: str,
        event: object | None,
        *,
        deadline_us: int | None = None,
        publish: bool = True,
        correction: bool = False,
    ) -> tuple[int, bool]:
        """Enter or leave a segment as of `at` and emit the change; returns its effective
        time and whether it is a correction. It is never dated before the user's previous
        change of that segment (so each user's history per segment stays in order): a late
        event from before that change shows the change was premature, and the new one is
        flagged a correction (as are, by the caller, those of segments that follow it)."""
        previous = user.memberships[segment_id][1] if not inside else user.left.get(segment_id)
        if previous is not None and at < previous:
            when = getattr(event, "event_time_us", None)
            correction = correction or (when is not None and when < min(previous, self.now_us))
            at = previous
        if inside:
            user.memberships[segment_id] = [version, at]
            user.left.pop(segment_id, None)
        else:
            user.memberships.pop(segment_id, None)
            user.left[segment_id] = at
        self._emit(
            user,
            MEMBERSHIP,
            "",
            "entered" if inside else "exited",
            cause,
            at,
            position,
            event=event,  # type: ignore[arg-type]
            deadline_us=deadline_us,
            correction=correction,
            segment_id=segment_id,
            segment_version=version,
            published=publish,
        )
        return at, correction

    def _leave_all_segments(self, user: User, at: int, position: int, event: object | None) -> None:
        for segment_id, (version, _since) in sorted(user.memberships.items()):
            self._set_membership(user, segment_id, version, False, at, position, EVENT, event)
        self._dirty.add(user.key)

    def _app_users(self, app_id: str) -> list[User]:
        return [u for key, u in sorted(self.users.items()) if key[0] == app_id]

    def _segment_defined(self, event: Segment.Defined | Segment.Redefined, position: int) -> None:
        app_id, segment_id = event.app_id, event.segment_id  # type: ignore[union-attr]
        segments = self.segments.setdefault(app_id, live.AppSegments())
        version = event.definition_version
        segments.definitions[live.definition_key(segment_id, version)] = event.definition
        compiled = compile_segment(segment_id, version, parse(event.definition))
        already = segments.live_keys()
        segments.pending[segment_id] = live.Pending(
            compiled,
            position,
            bool(getattr(event, "silent", False)),
            frozenset(k for k in compiled.trackers if k not in already),
        )
        segments.reindex()
        self._dirty_segments.add(app_id)
        self._segment_records.append(
            ("defined", app_id, segment_id, version, position, self.now_us, event)
        )

    def _segment_built(self, event: Segment.Built, position: int) -> None:
        segments = self.segments.get(event.app_id)  # type: ignore[attr-defined]
        segment_id = event.segment_id  # type: ignore[attr-defined]
        if segments is None:
            return
        pending = segments.pending.get(segment_id)
        if pending is None or pending.compiled.version != event.definition_version:
            return  # superseded by a newer definition, or archived
        app_id = event.app_id  # type: ignore[attr-defined]
        specs = [pending.compiled.trackers[k] for k in sorted(pending.new_keys)]
        history = self.builds.load(
            app_id, segment_id, pending.compiled.version, pending.position, specs
        )
        spec_of = {spec.key: spec for spec in specs}
        for user_id in sorted(history):
            key = (
                self._user_key(app_id, "", user_id[len(ANONYMOUS_PREFIX) :])
                if user_id.startswith(ANONYMOUS_PREFIX)
                else (app_id, user_id)
            )
            user = self.users.get(key)
            if user is None:
                continue
            for tracker_key, state in history[user_id].items():
                spec = spec_of.get(tracker_key)
                if spec is not None:
                    user.trackers[tracker_key] = tr.merge(
                        spec, state, user.trackers.get(tracker_key)
                    )
            self._dirty.add(user.key)
        self._consumed_builds.append((app_id, segment_id, pending.compiled.version))
        self._activate(app_id, segments, segment_id, position)

    def _activate(
        self, app_id: str, segments: live.AppSegments, segment_id: str, position: int
    ) -> None:
        pending = segments.pending.pop(segment_id)
        compiled = pending.compiled
        previous = segments.active.get(segment_id)
        segments.active[segment_id] = compiled
        self._retire_unused_trackers(app_id, segments, previous)
        segments.reindex()
        self._dirty_segments.add(app_id)
        self._segment_records.append(
            ("active", app_id, segment_id, compiled.version, position, self.now_us)
        )
        at = self.now_us
        dependents = segments.dependents.get(segment_id, set())
        for user in self._app_users(app_id):
            for tracker_key in pending.new_keys:
                state = user.trackers.get(tracker_key)
                if state is not None:
                    pruned = tr.prune(compiled.trackers[tracker_key], state, at)
                    if pruned is None:
                        del user.trackers[tracker_key]
            inside = compiled.member(user, at)
            was = segment_id in user.memberships
            if inside and was:
                user.memberships[segment_id][0] = compiled.version
                self._dirty.add(user.key)
            elif inside != was:
                self._set_membership(
                    user,
                    segment_id,
                    compiled.version,
                    inside,
                    at,
                    position,
                    REDEFINITION,
                    None,
                    publish=not pending.silent,
                )
                if dependents:
                    self._reevaluate(user, set(dependents), at, position, cause=REDEFINITION)
            if compiled.timed:
                due = compiled.boundary(user, at)
                if due is None:
                    user.segment_due.pop(segment_id, None)
                else:
                    user.segment_due[segment_id] = due
                    if user.segment_deadline_us is None or due < user.segment_deadline_us:
                        user.segment_deadline_us = due
                        self._schedule_segments(user, due)
                self._dirty.add(user.key)

    def _retire_unused_trackers(
        self, app_id: str, segments: live.AppSegments, previous: object | None
    ) -> None:
        if previous is None:
            return
        still = segments.live_keys()
        gone = [k for k in previous.trackers if k not in still]  # type: ignore[attr-defined]
        if not gone:
            return
        for user in self._app_users(app_id):
            dropped = False
            for tracker_key in gone:
                if user.trackers.pop(tracker_key, None) is not None:
                    dropped = True
            if dropped:
                self._dirty.add(user.key)

    def _segment_archived(self, event: Segment.Archived, position: int) -> None:
        app_id = event.app_id  # type: ignore[attr-defined]
        segment_id = event.segment_id  # type: ignore[attr-defined]
        segments = self.segments.get(app_id)
        if segments is None:
            return
        segments.pending.pop(segment_id, None)
        previous = segments.active.pop(segment_id, None)
        dependents = segments.dependents.get(segment_id, set())
        self._retire_unused_trackers(app_id, segments, previous)
        segments.reindex()
        self._dirty_segments.add(app_id)
        self._segment_records.append(("archived", app_id, segment_id, 0, position, self.now_us))
        at = self.now_us
        for user in self._app_users(app_id):
            membership = user.memberships.get(segment_id)
            if membership is not None:
                self._set_membership(
                    user, segment_id, membership[0], False, at, position, REDEFINITION, None
                )
                if dependents:
                    self._reevaluate(user, set(dependents), at, position, cause=REDEFINITION)
            if user.left.pop(segment_id, None) is not None:
                self._dirty.add(user.key)

    # ---- output --------------------------------------------------------------------------

    def _emit(
        self,
        user: User,
        kind: str,
        from_value: str,
        to_value: str,
        cause: str,
        effective_us: int,
        position: int,
        *,
        event: EventTracked | UserIdentified | CauseEvent | None = None,
        deadline_us: int | None = None,
        correction: bool = False,
        corrected_since_us: int | None = None,
        **extra: Any,
    ) -> None:
        user.sequence += 1
        self._changes.append(
            Change(
                change_id=change_id(user.app_id, user.user_id, user.sequence, kind, position),
                kind=kind,
                app_id=user.app_id,
                user_id=user.user_id,
                sequence=user.sequence,
                from_value=from_value,
                to_value=to_value,
                cause=cause,
                effective_us=effective_us,
                position=position,
                recorded_us=self.now_us,
                event_ids=(event.event_id,) if event is not None else (),
                event_name=getattr(event, "name", "") if event is not None else "",
                deadline_us=deadline_us,
                correction=correction,
                corrected_since_us=corrected_since_us,
                **extra,
            )
        )
        self._dirty.add(user.key)

    def drain(self) -> Drained:
        """Hand over everything changed since the last drain, and forget it."""
        drained = Drained(
            changes=self._changes,
            users=[self.users[k] for k in sorted(self._dirty) if k in self.users],
            profile_users=[self.users[k] for k in sorted(self._dirty_profiles) if k in self.users],
            deleted_users=sorted(self._deleted),
            apps={a: self.apps[a] for a in sorted(self._dirty_apps)},
            aliases={a: self.aliases[a] for a in sorted(self._dirty_aliases)},
            now_us=self.now_us,
            segment_apps={a: self.segments[a] for a in sorted(self._dirty_segments)},
            merges=self._merges,
            facts=self._facts,
            segment_records=self._segment_records,
            consumed_builds=self._consumed_builds,
        )
        self._segment_records = []
        self._consumed_builds = []
        self._dirty_segments = set()
        self._merges = []
        self._facts = []
        self._changes = []
        self._dirty = set()
        self._dirty_profiles = set()
        self._deleted = set()
        self._dirty_apps = set()
        self._dirty_aliases = set()
        return drained
