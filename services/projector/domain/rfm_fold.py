"""The RFM fold: purchasers' values as purchases come in, their scores at recompute ticks.

A purchase moves the purchaser's values in the app's index at once; scores (theirs, and
those of everyone the move of the cut points touches) are settled at the first tick of
each recompute interval (`RfmPolicy.recompute_minutes`), so no score is ever published
from cut points that do not count it. `rfm.py` holds the scoring rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from services.eventlog.events import EventTracked, UserIdentified
from services.eventlog.vocabulary import RfmGroup
from services.projector.domain import rfm
from services.projector.domain.changes import EVENT, RECOMPUTATION, RFM
from services.projector.domain.fold_state import FoldState
from services.projector.domain.rfm_index import RfmIndex
from services.projector.domain.segments.compile import USES_RFM
from services.projector.domain.segments.membership import Membership
from services.projector.domain.user import User, day_of

if TYPE_CHECKING:
    from services.projector.domain.history_mode import AppHistory


@dataclass(frozen=True)
class CauseEvent:
    """The event behind a change made after it (a purchase, scored at the next tick)."""

    event_id: str
    name: str
    event_time_us: int


@dataclass
class AppState:
    """One app's state of the fold: RFM, and its history mode (history_mode.py)."""

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
    # While the app imports its history: its own clock and parked live events.
    history: AppHistory | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {
            "quintiles": self.quintiles.to_dict(),
            "rfm_slot": self.rfm_slot,
            "rfm_day": self.rfm_day,
            "pending": {user: self.pending[user] for user in sorted(self.pending)},
        }
        if self.history is not None:
            data["history"] = self.history.to_dict()
        return data


class RfmFold:
    """Apps' RFM states (`apps`), purchasers' values and scores, and group changes.

    `recorded` (a partition of a partitioned log): cut points are not computed here from
    this partition's purchasers but come recorded in the log (RfmCutPointsRecorded, over
    every partition's purchasers); the purchasers' current values are handed out with each
    batch (for whoever computes them), and the window still moves on here every day."""

    def __init__(self, state: FoldState, segments: Membership, *, recorded: bool = False) -> None:
        self._state = state
        self._segments = segments
        self._recorded = recorded
        self.apps: dict[str, AppState] = {}

    def app(self, app_id: str) -> AppState:
        app = self.apps.get(app_id)
        if app is None:
            app = self.apps[app_id] = AppState()
        return app

    def load_app(self, app_id: str, data: dict[str, Any]) -> None:
        app = self.app(app_id)
        app.quintiles = rfm.Quintiles.from_dict(data["quintiles"])
        app.rfm_slot = data["rfm_slot"]
        app.rfm_day = data.get("rfm_day")
        app.pending = dict(data.get("pending", {}))
        app.index = None

    def load_user(self, user: User) -> None:
        if user.purchases:
            self.app(user.app_id).purchasers.add(user.user_id)

    def purchased(
        self, user: User, cause: EventTracked | UserIdentified | CauseEvent | None, position: int
    ) -> None:
        """The user's purchases changed (a purchase, or an anonymous history merged in;
        `cause` None: handed over from another partition): their values move in the app's
        index now; their scores at the next recomputation."""
        policy = self._state.policies(user.app_id).rfm
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
        app = self.app(user.app_id)
        index, first = self._index(user.app_id)
        app.purchasers.add(user.user_id)
        self._put(index, user.app_id, user.user_id, rfm.values_in(user, first))
        app.pending[user.user_id] = (
            [cause.event_id, getattr(cause, "name", ""), cause.event_time_us] if cause else []
        )
        self._state.changes.apps.add(user.app_id)

    def forget(self, app_id: str, user_id: str) -> None:
        """A purchaser is no more (merged into another user): out of the app's index."""
        app = self.app(app_id)
        if user_id in app.purchasers:
            app.purchasers.discard(user_id)
            app.pending.pop(user_id, None)
            self._put(self._index(app_id)[0], app_id, user_id, None)

    def recompute_due(self, now_us: int, position: int, only: str | None = None) -> None:
        """At the clock's move to `now_us`: recompute each app whose interval began (of the
        apps on the recorded clock; `only`: that app, at the move of its own clock)."""
        for app_id in sorted(self.apps) if only is None else (only,):
            app = self.app(app_id)
            if only is None and app.history is not None:
                continue  # folding its history by its own clock
            slot = now_us // (self._state.policies(app_id).rfm.recompute_minutes * 60_000_000)
            if slot > app.rfm_slot:
                app.rfm_slot = slot
                self._state.changes.apps.add(app_id)
                if not (app.purchasers or app.pending):
                    continue
                if self._recorded:
                    self._expire(app_id, now_us)  # scores come with the recorded cut points
                else:
                    self._recompute(app_id, now_us, position)

    def cut_points_recorded(
        self, app_id: str, quintiles: dict[str, Any], at: int, position: int
    ) -> None:
        """Cut points over every partition's purchasers, recorded at the recompute tick
        `at`: every score they change, and the purchases since the last ones, settle now."""
        if self._recorded:
            self._settle(app_id, rfm.Quintiles.from_dict(quintiles), at, position, [])

    def _put(
        self, index: RfmIndex, app_id: str, user_id: str, values: rfm.RfmValues | None
    ) -> None:
        index.put(user_id, values)
        if self._recorded:
            self._state.changes.rfm_value(app_id, user_id, values)

    def _index(self, app_id: str) -> tuple[RfmIndex, int]:
        """The app's index of purchasers' values (built from the users after loading), and
        the first day of the window it counts."""
        app = self.app(app_id)
        if app.rfm_day is None:
            app.rfm_day = day_of(self._state.now_us)
            self._state.changes.apps.add(app_id)
        first = rfm.first_day(app.rfm_day, self._state.policies(app_id).rfm)
        if app.index is None:
            users = self._state.users
            app.index = RfmIndex()
            app.index.rebuild({u: rfm.values_in(users[(app_id, u)], first) for u in app.purchasers})
        return app.index, first

    def _recompute(self, app_id: str, at: int, position: int) -> None:
        """Cut points of all the app's purchasers as of the tick at `at`, and every score
        they change: afterwards each purchaser's scores equal a fresh quintile computation
        over all purchases folded so far (the window moves on with the UTC day)."""
        expired = self._expire(app_id, at)
        self._settle(app_id, self._index(app_id)[0].quintiles(), at, position, expired)

    def _expire(self, app_id: str, at: int) -> list[str]:
        """On a new UTC day, purchases that left the window are forgotten; whose values so
        moved (recorded cut points: they are settled with the next ones)."""
        app = self.app(app_id)
        index = self._index(app_id)[0]
        users = self._state.users
        day = day_of(at)
        expired: list[str] = []
        if app.rfm_day != day:  # the window moved on: some purchases may have left it
            app.rfm_day = day
            first = rfm.first_day(day, self._state.policies(app_id).rfm)
            for user_id in sorted(app.purchasers):
                purchaser = users[(app_id, user_id)]
                if purchaser.purchases and min(purchaser.purchases) < first:
                    rfm.forget_before(purchaser, first)
                    self._put(index, app_id, user_id, rfm.values_in(purchaser, first))
                    expired.append(user_id)
                    if self._recorded:
                        app.pending.setdefault(user_id, [])
        return expired

    def _settle(
        self, app_id: str, quintiles: rfm.Quintiles, at: int, position: int, expired: list[str]
    ) -> None:
        """Score against `quintiles` every purchaser they move, and those pending."""
        app = self.app(app_id)
        index = self._index(app_id)[0]
        users = self._state.users
        moved = index.moved(app.quintiles, quintiles)
        app.quintiles = quintiles
        self._state.changes.apps.add(app_id)
        who = set(app.purchasers) if moved is None else moved
        who.update(app.pending, expired)
        for user_id in sorted(who):
            user = users.get((app_id, user_id))
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
            group = RfmGroup.NONE.value
            app.purchasers.discard(user.user_id)
        else:
            scores = app.quintiles.scores(values)
            group = rfm.group_of(*scores)
        raw = [values.last_purchase_us, values.purchases, values.amount] if values else []
        if scores != user.rfm_scores or raw != user.rfm_values:
            user.rfm_scores = scores
            user.rfm_values = raw
            self._state.changes.users.add(user.key)
        if group == user.rfm_group:
            return
        kind = EVENT if cause is not None else RECOMPUTATION
        effective = cause.event_time_us if cause is not None else at
        self._state.changes.emit(
            user,
            RFM,
            user.rfm_group,
            group,
            kind,
            effective,
            position,
            self._state.now_us,
            event=cause,
            scores=(scores[0], scores[1], scores[2]) if scores else None,
            recency_days=values.recency_days(at) if values else 0.0,
            purchases=values.purchases if values else 0,
            amount=values.amount if values else 0.0,
        )
        user.rfm_group = group
        judged = self._segments.judged_at(user, at)
        self._segments.use_changed(
            user,
            USES_RFM,
            judged,
            position,
            cause=kind,
            event=cause,
            since_us=min(effective, judged),
        )
