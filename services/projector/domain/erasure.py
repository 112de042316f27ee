"""A user's erasure in the fold (UserErased): out of every segment, personal state gone.

The log's sealed fields of the user (and of the anonymous ids linked to them) already
read as erased from here on (their keys are destroyed); this clears what the fold kept
from them: traits, contact addresses, consents, time zone, locations and segment
trackers. The user leaves each segment with cause ERASURE and never enters one again
(`User.erased`; see Membership.set_membership). What is not personal stays: counts,
active days, lifecycle and RFM (the RFM values feed every purchaser's cut points, so
keeping them keeps everyone else's scores as they were).
"""

from __future__ import annotations

from services.eventlog.events import UserErased
from services.projector.domain.changes import ERASURE
from services.projector.domain.fold_state import FoldState
from services.projector.domain.segments.membership import Membership
from services.projector.domain.user import User


class Erasure:
    def __init__(self, state: FoldState, segments: Membership) -> None:
        self._state = state
        self._segments = segments

    def erase(self, event: UserErased, position: int) -> None:
        """Erase the user and every anonymous user of theirs this fold still holds."""
        subjects = dict.fromkeys([event.user_id, *event.subjects])
        for subject in subjects:
            user = self._state.users.get((event.app_id, subject))
            if user is not None:
                self._erase(user, event, position)
            self._state.changes.erased.add((event.app_id, subject))

    def _erase(self, user: User, event: UserErased, position: int) -> None:
        at = max(event.erased_time_us, user.last_seen_us or 0)
        for segment_id, (version, _since) in sorted(user.memberships.items()):
            self._segments.set_membership(
                user, segment_id, version, False, at, position, ERASURE, None
            )
        clear_personal(user)
        self._state.changes.users.add(user.key)
        self._state.changes.profiles.add(user.key)


def clear_personal(user: User) -> None:
    """Forget what the user's personal fields left in their state."""
    user.erased = True
    user.traits = {}
    user.time_traits = {}
    user.contact = {}
    user.consents = {}
    user.timezone = ""
    user.location = {}
    user.place = {}
    user.location_us = None
    user.place_us = None
    user.trackers = {}
    user.segment_due = {}
    user.segment_deadline_us = None
