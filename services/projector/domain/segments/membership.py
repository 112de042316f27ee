"""Segment membership as users change: re-evaluation, segment timers, entering and leaving.

Whatever changes about a user that segments use (their events' trackers, profile,
lifecycle state, RFM group, first sighting) re-evaluates the active segments that use
it, in dependency order. While one event of a user is applied, what changes about them is
collected instead (`defer`), and their segments are evaluated once, at its end.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from services.eventlog.events import EventTracked, UserIdentified
from services.projector.domain.changes import EVENT, MEMBERSHIP, TIME
from services.projector.domain.changeset import UserKey
from services.projector.domain.deadlines import DeadlineQueue
from services.projector.domain.fold_state import FoldState
from services.projector.domain.segments import dating, live
from services.projector.domain.segments import trackers as tr
from services.projector.domain.segments.compile import USES_FIRST_SEEN, Compiled
from services.projector.domain.user import User

# Pseudo-use: a user's first event re-evaluates every segment (negations may hold).
NEW_USER = "new_user"


class Membership:
    """Users' segment memberships, kept up to date as what segments use changes."""

    def __init__(self, state: FoldState, timers: DeadlineQueue) -> None:
        self._state = state
        self._timers = timers
        # While an event is applied: its user, and what changed about them so far.
        self._deferral: tuple[UserKey, set[str]] | None = None

    def defer(self, key: UserKey, uses: Iterable[str] = ()) -> set[str]:
        """From now until `stop_deferring` (call it in a `finally`), collect what changes
        about that user (`note`, `use_changed`) in the set returned, instead of
        re-evaluating: the caller evaluates once, at the end of the event."""
        self._deferral = (key, set(uses))
        return self._deferral[1]

    def stop_deferring(self) -> None:
        self._deferral = None

    def note(self, use: str) -> None:
        """Note what changed about the user of the event being applied (if deferring)."""
        if self._deferral is not None:
            self._deferral[1].add(use)

    def judged_at(self, user: User, when: int) -> int:
        """Where a user's segments are judged on an event of theirs at `when`: the recorded
        clock, or the user's latest event time if that is ahead of it (never earlier than
        an evaluation already made for them)."""
        return max(self._state.now_us, when, user.last_seen_us or when)

    def use_changed(
        self,
        user: User,
        use: str,
        at: int,
        position: int,
        *,
        cause: str,
        event: object | None,
        since_us: int | None = None,
    ) -> None:
        """Something segments may use changed about `user` (their lifecycle state, their RFM
        group): re-evaluate the segments that use it, or note it while deferring for them."""
        deferral = self._deferral
        if deferral is not None and deferral[0] == user.key:
            deferral[1].add(use)
            return
        segments = self._state.segments.get(user.app_id)
        if segments is not None and segments.active:
            hit = live.affected(segments, (), (use,))
            if hit:
                self.reevaluate(
                    user, hit, at, position, cause=cause, event=event, since_us=since_us
                )

    def after_event(
        self,
        user: User,
        segments: live.AppSegments,
        event: EventTracked,
        uses: set[str],
        position: int,
    ) -> None:
        """An event of the user was applied: feed it to their trackers, then re-evaluate
        what it and `uses` (collected while it was applied) touch."""
        # Segments are judged by the recorded clock, or the user's own latest event if it is
        # ahead (windows only look back, so an event a little ahead of the last tick still
        # counts); the changes are dated when they took effect (from the event's time on).
        at = self.judged_at(user, event.event_time_us)
        touched = live.observe_event(
            segments,
            user.trackers,
            event.name,
            event.event_time_us,
            event.properties,
            event.time_properties,
            event.context,
            self._state.now_us,
        )
        if touched:
            self._state.changes.users.add(user.key)
        if NEW_USER in uses:
            uses.add(USES_FIRST_SEEN)
        hit = live.affected(segments, touched, uses, everything=NEW_USER in uses)
        if hit:
            self.reevaluate(
                user, hit, at, position, cause=EVENT, event=event, since_us=event.event_time_us
            )

    def after_identify(
        self,
        user: User,
        segments: live.AppSegments,
        event: UserIdentified,
        uses: set[str],
        position: int,
    ) -> None:
        """An Identify of the user was applied: re-evaluate what `uses` touch."""
        self.reevaluate(
            user,
            live.affected(segments, (), uses, everything=NEW_USER in uses),
            self.judged_at(user, event.event_time_us),
            position,
            cause=EVENT,
            event=event,
            since_us=event.event_time_us,
        )

    def reevaluate(
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
        segments = self._state.segments[user.app_id]
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
                effective, correction = self.set_membership(
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
            self._state.changes.users.add(user.key)
        if next_due is not None:
            self._timers.schedule(user.key, next_due)

    def due(self, user: User, due: int, position: int) -> None:
        """A segment deadline passed: drop expired window entries, re-evaluate timed ones."""
        segments = self._state.segments.get(user.app_id)
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
        self._state.changes.users.add(user.key)
        self.reevaluate(user, ready, due, position, cause=TIME, deadline_us=due)

    def arm(self, user: User, segment_id: str, compiled: Compiled, at: int) -> None:
        """Set when a timed segment, just switched on, may next change for the user."""
        due = compiled.boundary(user, at)
        if due is None:
            user.segment_due.pop(segment_id, None)
        else:
            user.segment_due[segment_id] = due
            if user.segment_deadline_us is None or due < user.segment_deadline_us:
                user.segment_deadline_us = due
                self._timers.schedule(user.key, due)
        self._state.changes.users.add(user.key)

    def set_membership(
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
        if inside and user.erased:
            return at, False  # an erased user enters no segment
        previous = user.memberships[segment_id][1] if not inside else user.left.get(segment_id)
        if previous is not None and at < previous:
            when = getattr(event, "event_time_us", None)
            correction = correction or (
                when is not None and when < min(previous, self._state.now_us)
            )
            at = previous
        if inside:
            user.memberships[segment_id] = [version, at]
            user.left.pop(segment_id, None)
        else:
            user.memberships.pop(segment_id, None)
            user.left[segment_id] = at
        self._state.changes.emit(
            user,
            MEMBERSHIP,
            "",
            "entered" if inside else "exited",
            cause,
            at,
            position,
            self._state.now_us,
            event=event,
            deadline_us=deadline_us,
            correction=correction,
            segment_id=segment_id,
            segment_version=version,
            published=publish,
        )
        return at, correction

    def leave_all(self, user: User, at: int, position: int, event: Any) -> None:
        """The user leaves every segment they are in (they are merged into another)."""
        for segment_id, (version, _since) in sorted(user.memberships.items()):
            self.set_membership(user, segment_id, version, False, at, position, EVENT, event)
        self._state.changes.users.add(user.key)
