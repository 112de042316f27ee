"""When a membership change took effect, for a cause that lies before the evaluation.

An event on time (at or after the recorded clock) dates the changes it causes at
its own time, and a deadline at the deadline. A late event (before the clock) is
evaluated at the clock, but what it changed may have held since earlier: a late
"added to cart" from 30 hours ago puts the user in "no purchase within 24 h" as of
6 hours ago, not now and not 30 hours ago. `settled_since` finds that moment by
stepping through the segment's own deadlines (`boundary`) from the event's time to
the evaluation, with the user's state as it is now.
"""

from __future__ import annotations

from services.projector.domain.segments.compile import USES_LIFECYCLE, Compiled
from services.projector.domain.user import User

# Deadlines stepped through at most; past that the change is dated at the evaluation.
MAX_STEPS = 256


def settled_since(compiled: Compiled, user: User, lo: int, at: int, inside: bool) -> int:
    """The earliest time in [lo, at] from which the user's membership has been `inside`
    without interruption up to `at` (membership at `at` is `inside`).

    Exact for conditions on time (recency, inaction, first seen, a window's oldest
    entry leaving) and on state (traits, RFM: taken as holding since `lo`). A condition
    on the lifecycle state holds no earlier than the user's state began (`since_us`), so
    a late event that made a user dormant two weeks after it dates their entry into a
    dormant segment when they became dormant, as the lifecycle change itself is dated.
    A window is judged with the entries it holds now, later ones included, so a late
    event completing "at least N in a window" dates the entry at the event's own time.
    """
    if USES_LIFECYCLE in compiled.uses and user.since_us is not None:
        lo = min(max(lo, user.since_us), at)
    start: int | None = lo if compiled.member(user, lo) == inside else None
    t = lo
    for _ in range(MAX_STEPS):
        nxt = compiled.boundary(user, t)
        if nxt is None or nxt > at or nxt <= t:
            return start if start is not None else at
        t = nxt
        if compiled.member(user, t) == inside:
            if start is None:
                start = t
        else:
            start = None
    return at
