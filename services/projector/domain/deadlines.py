"""Users' deadlines: one queue type, used twice (lifecycle and segment timers).

A user has two deadlines: when their lifecycle state next changes by time alone
(`User.deadline_us`) and when one of their segment memberships may (`segment_deadline_us`).
Each kind has its own `DeadlineQueue`; `Timers` fires both in one time order, when the
recorded clock moves on (`due`) and, per user, before an event of theirs from ahead of the
clock (`overdue`).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from enum import Enum

from services.projector.domain.changeset import UserKey
from services.projector.domain.user import User

# Deadlines of one user fired before one event of theirs, at the most (each moves them on).
MAX_CATCH_UP = 10_000


class DeadlineQueue:
    """Deadlines of users, earliest first.

    An entry is pushed only when a user's deadline moves earlier than their queued one, so
    a user has one live entry; older ones are skipped when they come up. `current(key)` is
    the user's deadline now: an entry that comes due after it moved later is re-armed there.
    """

    __slots__ = ("_current", "_heap", "_queued", "held")

    def __init__(self, current: Callable[[UserKey], int | None]) -> None:
        self._current = current
        self._heap: list[tuple[int, UserKey]] = []
        self._queued: dict[UserKey, int] = {}
        # Apps whose users' deadlines go to a queue of their own (history mode).
        self.held: dict[str, DeadlineQueue] = {}

    def schedule(self, key: UserKey, deadline: int) -> None:
        if self.held and key[0] in self.held:
            self.held[key[0]].schedule(key, deadline)
            return
        queued = self._queued.get(key)
        if queued is None or deadline < queued:
            self._queued[key] = deadline
            heapq.heappush(self._heap, (deadline, key))

    def head(self, until: int) -> int | None:
        """The time of the earliest entry if it is due by `until` (it may be a stale one)."""
        heap = self._heap
        return heap[0][0] if heap and heap[0][0] <= until else None

    def pop(self) -> tuple[UserKey, int] | None:
        """Take the earliest entry: (user, deadline) if that is still their deadline, else
        None (a stale entry, or one re-armed at the user's later deadline)."""
        entry, key = heapq.heappop(self._heap)
        if self._queued.get(key) != entry:
            return None  # an earlier entry for this user exists or existed
        del self._queued[key]
        deadline = self._current(key)
        if deadline is None:
            return None
        if deadline > entry:
            self.schedule(key, deadline)  # the deadline moved on: re-arm
            return None
        return key, deadline


class Due(Enum):
    LIFECYCLE = "lifecycle"
    SEGMENTS = "segments"


class Timers:
    """The lifecycle and segment deadlines of the users in `users`."""

    def __init__(self, users: dict[UserKey, User]) -> None:
        def lifecycle(key: UserKey) -> int | None:
            user = users.get(key)
            return None if user is None else user.deadline_us

        def segments(key: UserKey) -> int | None:
            user = users.get(key)
            return None if user is None else user.segment_deadline_us

        self.lifecycle = DeadlineQueue(lifecycle)
        self.segments = DeadlineQueue(segments)

    def load(self, user: User) -> None:
        """Queue the deadlines a loaded user has."""
        if user.deadline_us is not None:
            self.lifecycle.schedule(user.key, user.deadline_us)
        if user.segment_deadline_us is not None:
            self.segments.schedule(user.key, user.segment_deadline_us)

    def hold(self, app_id: str, users: list[User]) -> None:
        """Keep the deadlines of an app's `users` apart from now on (the app folds its
        history by its own clock): `due` no longer fires them, `due(app_id=...)` does."""
        for queue in (self.lifecycle, self.segments):
            queue.held[app_id] = DeadlineQueue(queue._current)
            for key in [k for k in queue._queued if k[0] == app_id]:
                del queue._queued[key]  # its entries in the heap are stale from now on
        for user in users:
            self.load(user)

    def release(self, app_id: str, users: list[User]) -> None:
        """The app's deadlines join everyone's again."""
        for queue in (self.lifecycle, self.segments):
            del queue.held[app_id]
        for user in users:
            self.load(user)

    def due(self, until: int, app_id: str | None = None) -> Iterator[tuple[Due, UserKey, int]]:
        """Every deadline up to `until` (of the held app `app_id`, else of the apps not
        held), in time order (lifecycle first on a tie), each as it comes up: firing one
        may queue more before the next is taken."""
        lifecycle, segments = self.lifecycle, self.segments
        if app_id is not None:
            lifecycle, segments = lifecycle.held[app_id], segments.held[app_id]
        while True:
            life = lifecycle.head(until)
            seg = segments.head(until)
            if life is None and seg is None:
                return
            if seg is None or (life is not None and life <= seg):
                fired, kind = lifecycle.pop(), Due.LIFECYCLE
            else:
                fired, kind = segments.pop(), Due.SEGMENTS
            if fired is not None:
                yield kind, fired[0], fired[1]


def overdue(user: User, before: int) -> tuple[Due, int] | None:
    """The user's earliest own deadline if it is before `before` (lifecycle first on a tie).
    Fire it and ask again, at most MAX_CATCH_UP times per event."""
    life = user.deadline_us
    seg = user.segment_deadline_us
    if life is not None and life < before and (seg is None or life <= seg):
        return Due.LIFECYCLE, life
    if seg is not None and seg < before:
        return Due.SEGMENTS, seg
    return None


def catch_up(user: User | None, before: int) -> Iterator[tuple[Due, User, int]]:
    """Before an event of `user` from ahead of the recorded clock (at `before`): their own
    deadlines before the event's time, in time order, each to fire (dated at its deadline)
    before the next is asked for: what happened to the user between the last tick and
    their event comes before it. At most MAX_CATCH_UP."""
    if user is None:
        return
    for _ in range(MAX_CATCH_UP):
        due = overdue(user, before)
        if due is None:
            return
        yield due[0], user, due[1]
