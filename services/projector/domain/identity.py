"""Who an event is about: user keys, aliases, Identify, and anonymous histories merged.

A user is keyed by (app, user id); an anonymous one by (app, "anonymous:" + anonymous
id) until an Identify links that anonymous id to a user id (an alias). From then on the
anonymous id stands for the user, and the anonymous history so far is folded into the
user's: activity, counts, purchases, traits not set, location and segment trackers.
"""

from __future__ import annotations

from services.eventlog.events import UserIdentified
from services.eventlog.partition_events import AnonymousHandedOver, AnonymousLinked
from services.projector.domain import lifecycle, location
from services.projector.domain.changes import EVENT
from services.projector.domain.changeset import Elsewhere, Merge, UserKey
from services.projector.domain.fold_state import FoldState
from services.projector.domain.lifecycle_fold import LifecycleFold
from services.projector.domain.rfm_fold import CauseEvent, RfmFold
from services.projector.domain.segments import live
from services.projector.domain.segments import trackers as tr
from services.projector.domain.segments.membership import NEW_USER, Membership
from services.projector.domain.user import User

ANONYMOUS_PREFIX = "anonymous:"


class Identity:
    """Keys of users, aliases of anonymous ids (`aliases`), Identify and merges."""

    def __init__(
        self,
        state: FoldState,
        lifecycle_fold: LifecycleFold,
        rfm_fold: RfmFold,
        segments: Membership,
    ) -> None:
        self._state = state
        self._lifecycle = lifecycle_fold
        self._rfm = rfm_fold
        self._segments = segments
        # (app, anonymous id) -> the user id it stands for.
        self.aliases: dict[tuple[str, str], str] = {}

    def key(self, app_id: str, user_id: str, anonymous_id: str) -> UserKey:
        """The user an event names: its user id, or whom its anonymous id stands for."""
        if user_id:
            return (app_id, user_id)
        mapped = self.aliases.get((app_id, anonymous_id))
        if mapped is not None:
            return (app_id, mapped)
        return (app_id, ANONYMOUS_PREFIX + anonymous_id)

    def key_of_stored(self, app_id: str, user_id: str) -> UserKey:
        """The user now behind a user id stored earlier (maybe "anonymous:...")."""
        if user_id.startswith(ANONYMOUS_PREFIX):
            return self.key(app_id, "", user_id[len(ANONYMOUS_PREFIX) :])
        return (app_id, user_id)

    def identify(self, event: UserIdentified, position: int) -> User:
        """Apply an Identify: the profile it sets, and the anonymous id it links."""
        app_id = event.app_id
        key = self.key(app_id, event.user_id, event.anonymous_id)
        user = self._state.user(key)
        self._state.changes.profiles.add(key)
        _update_profile(user, event)
        if event.user_id and event.anonymous_id:
            alias = (app_id, event.anonymous_id)
            if self.aliases.get(alias) != event.user_id:
                self.aliases[alias] = event.user_id
                self._state.changes.aliases.add(alias)
            anonymous_key = ANONYMOUS_PREFIX + event.anonymous_id
            if not self._state.local(app_id, anonymous_key):
                # Its history lives in another partition: ask for it (see link_elsewhere).
                at = max(self._state.now_us, event.event_time_us)
                self._state.changes.tell(
                    Elsewhere(
                        "link",
                        app_id,
                        event.anonymous_id,
                        event.user_id,
                        position,
                        at,
                        event_id=event.event_id,
                        event_time_us=event.event_time_us,
                    )
                )
                return user
            anonymous = self._state.users.pop((app_id, anonymous_key), None)
            if anonymous is not None:
                at = max(self._state.now_us, event.event_time_us)
                self._segments.leave_all(anonymous, at, position, event)
                self._take_over(anonymous, user, at, position, event)
        return user

    def _take_over(
        self,
        anonymous: User,
        user: User,
        at: int,
        position: int,
        event: UserIdentified | CauseEvent | None,
    ) -> None:
        self._merge(anonymous, user)
        self._segments.note(NEW_USER)
        self._lifecycle.evaluate(user, at, position, cause=EVENT, event=event)
        if user.purchases:
            self._rfm.purchased(user, event, position)

    def link_elsewhere(self, event: AnonymousLinked, position: int) -> None:
        """In the anonymous id's partition: it turned out to be a user who lives in another
        partition. From now on its events are the user's (forwarded there); its history so
        far leaves every segment here and is handed over whole."""
        app_id, anonymous_id, user_id = event.app_id, event.anonymous_id, event.user_id
        alias = (app_id, anonymous_id)
        if self.aliases.get(alias) != user_id:
            self.aliases[alias] = user_id
            self._state.changes.aliases.add(alias)
        anonymous = self._state.users.pop((app_id, ANONYMOUS_PREFIX + anonymous_id), None)
        if anonymous is None:
            return
        at = max(self._state.now_us, event.linked_us)
        cause = _identify_cause(event)
        self._segments.leave_all(anonymous, at, position, cause)
        self._state.changes.deleted_user(anonymous.key)
        self._rfm.forget(app_id, anonymous.user_id)
        self._state.changes.tell(
            Elsewhere(
                "hand_over",
                app_id,
                anonymous_id,
                user_id,
                position,
                event.linked_us,
                anonymous.to_dict(),
                event.event_id,
                event.event_time_us,
            )
        )

    def take_handed_over(self, event: AnonymousHandedOver, position: int) -> None:
        """In the user's partition: the history of their anonymous id arrived from its
        partition; fold it in as if it had been merged at the Identify that linked them (as
        far as the clock allows), and judge their segments."""
        key = (event.app_id, event.user_id)
        at = max(self._state.now_us, event.linked_us)
        cause = _identify_cause(event)
        segments = self._state.segments.get(event.app_id)
        uses = self._segments.defer(key, (NEW_USER,))
        try:
            user = self._state.user(key)
            self._take_over(User.from_dict(event.state), user, at, position, cause)
        finally:
            self._segments.stop_deferring()
        if segments is not None and segments.active:
            self._segments.reevaluate(
                user,
                live.affected(segments, (), uses, everything=True),
                self._segments.judged_at(user, at),
                position,
                cause=EVENT,
                event=cause,
                since_us=event.linked_us or None,
            )

    def forwarded(self, key: UserKey) -> bool:
        """An event for `key` that belongs to another partition (an anonymous id's event
        arriving after its link): noted to be sent on; True if so."""
        if self._state.local(*key):
            return False
        self._state.changes.forward = key
        return True

    def _merge(self, anonymous: User, user: User) -> None:
        """Fold an anonymous history into the user it turned out to be."""
        self._state.changes.deleted_user(anonymous.key)
        self._rfm.forget(anonymous.app_id, anonymous.user_id)
        for time in (anonymous.first_seen_us, anonymous.last_seen_us):
            if time is not None:
                user.seen(time)
        user.first_active_us = _earliest(user.first_active_us, anonymous.first_active_us)
        user.last_active_us = _latest(user.last_active_us, anonymous.last_active_us)
        for day in anonymous.active_days:
            user.add_active_day(day)
        lp = self._state.policies(user.app_id).lifecycle
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
            segments = self._state.segments.get(user.app_id)
            specs = segments.specs if segments is not None else {}
            for tracker_key, state in anonymous.trackers.items():
                spec = specs.get(tracker_key)
                if spec is not None:
                    user.trackers[tracker_key] = tr.merge(
                        spec, state, user.trackers.get(tracker_key)
                    )
        self._state.changes.merged(Merge(user.app_id, anonymous.user_id, user.user_id))


def _update_profile(user: User, event: UserIdentified) -> None:
    user.traits.update(event.traits)
    user.time_traits.update(event.time_traits)
    user.contact.update(event.contact)
    user.consents.update(event.consents)
    if event.timezone:
        user.timezone = event.timezone
    seen = location.observed(event.location) if event.location else {}
    if seen:
        user.location = location.fold(user.location, user.location_us, seen, event.event_time_us)
        if user.location_us is None or event.event_time_us > user.location_us:
            user.location_us = event.event_time_us


def _earliest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _latest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def _identify_cause(event: AnonymousLinked | AnonymousHandedOver) -> CauseEvent | None:
    """The Identify behind a hand-over, as the cause of the changes it makes (as in one
    fold, where that Identify makes them); None from letters written before it was sent."""
    return CauseEvent(event.event_id, "", event.event_time_us) if event.event_id else None
