"""History mode: an app folds its imported history by its own clock. No I/O.

Ingest appends an app's history between `HistoryImportStarted` and `HistoryImportFinished`
(in every partition), its events carrying `history_job`, interleaved with the app's own
`AppClockTicked` (services/eventlog/events.py). Between the markers the app is in
history mode here:

- its recorded clock starts at the history's first event and moves only by its own ticks:
  each fires the app's deadlines up to it and settles its RFM scores, as a `ClockTicked`
  does for everyone else; a `ClockTicked` leaves the app alone (its deadlines are held in
  queues of their own, deadlines.py). Its events fold by that clock, so late limits,
  windows, recency and dating are those of their time; the changes they make are recorded
  at the recorded clock (so they show as historical) and flagged `imported`;
- its live events (`history_job` == "") are parked, in arrival order;
- at Finished its clock rejoins the recorded clock (firing the deadlines it passes), then
  the parked events fold, in arrival order, each at its own position.

The mode (job, clock, parked events) is part of the app's state (`AppState.history`),
saved and loaded with it, so a restarted projector and a replay go on identically. Other
apps never see any of it.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from services.eventlog.events import (
    AppClockTicked,
    EventTracked,
    HistoryImportFinished,
    HistoryImportStarted,
    UserErased,
    UserIdentified,
)
from services.eventlog.partitions import user_key
from services.eventlog.sealing import ERASED
from services.projector.domain.deadlines import Due, Timers
from services.projector.domain.fold_state import FoldState
from services.projector.domain.rfm_fold import RfmFold
from services.projector.domain.user import User

UserEvent = EventTracked | UserIdentified
Fold = Callable[[object, int], None]
Fire = Callable[[Due, User, int, int], None]
_KINDS: dict[str, type[UserEvent]] = {
    EventTracked.KIND: EventTracked,
    UserIdentified.KIND: UserIdentified,
}
MARKERS = (HistoryImportStarted, AppClockTicked, HistoryImportFinished)


@dataclass
class AppHistory:
    """An app in history mode: its job, its own clock, its parked live events."""

    job_id: str
    clock_us: int
    # (position, event) of each live event of the app since Started, in arrival order.
    parked: list[tuple[int, UserEvent]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "clock_us": self.clock_us,
            "parked": [[position, event_to_dict(event)] for position, event in self.parked],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AppHistory:
        parked = [(position, event_from_dict(event)) for position, event in data["parked"]]
        return cls(data["job_id"], data["clock_us"], parked)


def event_to_dict(event: UserEvent) -> dict[str, Any]:
    """A user event as JSON-native values (its fields, and its kind)."""
    out: dict[str, Any] = {f.name: getattr(event, f.name) for f in fields(event)}
    out["originator_id"] = str(event.originator_id)
    out["kind"] = event.KIND
    return out


def event_from_dict(data: dict[str, Any]) -> UserEvent:
    values = dict(data)
    cls = _KINDS[values.pop("kind")]
    values["originator_id"] = uuid.UUID(values["originator_id"])
    return cls(**values)


class HistoryMode:
    """Routes each log event by its app's mode; the markers and app ticks move the mode."""

    def __init__(self, state: FoldState, timers: Timers, rfm: RfmFold, fire: Fire) -> None:
        self._state = state
        self._timers = timers
        self._rfm = rfm
        self._fire = fire
        # The apps in history mode (their AppState.history, set).
        self._apps: dict[str, AppHistory] = {}

    def fold(self, event: object, position: int, fold: Fold) -> None:
        """Apply `event` with `fold`, by its app's clock; or park it, or move the mode."""
        if isinstance(event, MARKERS):
            if isinstance(event, HistoryImportStarted):
                self._start(event.app_id, event.job_id, event.first_event_us)
            elif isinstance(event, AppClockTicked):
                self._tick(event.app_id, event.tick_time_us, position)
            else:
                self._finish(event, position, fold)
            return
        history = self._apps.get(getattr(event, "app_id", "")) if self._apps else None
        if history is None:
            fold(event, position)
        elif isinstance(event, UserEvent) and not event.history_job:
            history.parked.append((position, event))
            self._state.changes.apps.add(event.app_id)
        else:
            if isinstance(event, UserErased):
                self._erase_parked(history, event)
            self._by_clock(history, lambda: fold(event, position))

    def load(self, app_id: str, data: dict[str, Any] | None) -> None:
        """An app's saved mode (after its users are loaded)."""
        if data is not None:
            self._hold(app_id, AppHistory.from_dict(data))

    def _erase_parked(self, history: AppHistory, event: UserErased) -> None:
        """A user erased while their live events wait: those events lose their personal
        fields now, as a replay reads them (sealed with a destroyed key): only the RFM
        amount stays, which ingest keeps clear. (Without a keyring nothing is sealed and
        a replay would read them whole; erasing is the safe side.)"""
        subjects = {event.user_id, *event.subjects}
        amount = self._state.policies(event.app_id).rfm.amount_property
        for i, (position, parked) in enumerate(history.parked):
            if user_key(parked.user_id, parked.anonymous_id) not in subjects:
                continue
            if isinstance(parked, EventTracked):
                kept = {k: v for k, v in parked.properties.items() if k == amount}
                erased: UserEvent = dataclasses.replace(
                    parked, properties=kept, time_properties={}, context={}, sealed=ERASED
                )
            else:
                erased = dataclasses.replace(
                    parked,
                    traits={},
                    time_traits={},
                    contact={},
                    consents={},
                    timezone="",
                    location={},
                    sealed=ERASED,
                )
            history.parked[i] = (position, erased)
        self._state.changes.apps.add(event.app_id)

    # ---- the markers ---------------------------------------------------------------------

    def _start(self, app_id: str, job_id: str, first_event_us: int) -> None:
        if app_id in self._apps:
            return  # one job per app: already in history mode
        self._hold(app_id, AppHistory(job_id, first_event_us))
        self._state.changes.apps.add(app_id)

    def _tick(self, app_id: str, tick_us: int, position: int) -> None:
        history = self._apps.get(app_id)
        if history is not None and tick_us > history.clock_us:
            self._by_clock(history, lambda: self._advance(app_id, tick_us, position))
            self._state.changes.apps.add(app_id)

    def _finish(self, event: HistoryImportFinished, position: int, fold: Fold) -> None:
        history = self._apps.get(event.app_id)
        if history is None or history.job_id != event.job_id:
            return
        now = self._state.now_us
        if now > history.clock_us:
            self._by_clock(history, lambda: self._advance(event.app_id, now, position))
        del self._apps[event.app_id]
        self._rfm.app(event.app_id).history = None
        self._timers.release(event.app_id, self._state.app_users(event.app_id))
        self._state.changes.apps.add(event.app_id)
        for parked_position, parked in history.parked:
            fold(parked, parked_position)

    # ---- the app's clock -----------------------------------------------------------------

    def _hold(self, app_id: str, history: AppHistory) -> None:
        self._apps[app_id] = history
        self._rfm.app(app_id).history = history
        self._timers.hold(app_id, self._state.app_users(app_id))

    def _advance(self, app_id: str, to_us: int, position: int) -> None:
        """Move the app's clock (the recorded clock, while `_by_clock`) to `to_us`: fire
        the app's deadlines up to it, in time order, and settle its RFM scores."""
        state = self._state
        state.now_us = to_us
        for due, key, deadline in self._timers.due(to_us, app_id):
            self._fire(due, state.users[key], deadline, position)
        self._rfm.recompute_due(to_us, position, only=app_id)

    def _by_clock(self, history: AppHistory, step: Callable[[], None]) -> None:
        """`step()` with the app's clock as the recorded clock (which it may move), its
        changes recorded no earlier than the recorded clock."""
        state = self._state
        now = state.now_us
        state.now_us = history.clock_us
        state.changes.recorded_floor = now
        state.changes.importing = True
        try:
            step()
            history.clock_us = state.now_us
        finally:
            state.now_us = now
            state.changes.recorded_floor = 0
            state.changes.importing = False
