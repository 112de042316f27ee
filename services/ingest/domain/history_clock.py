"""The order of a history import in the log, and the app's recorded clock through it.

The projector folds an importing app by its own clock (AppClockTicked), so where the
ticks go is part of the contract with it:

- **Order.** The history's events are appended sorted by `sort_key`: event time, then
  Identify before Track at the same microsecond (a user's traits and identity links are
  known before what they did at that instant), then the log id (a uuid, compared as
  PostgreSQL compares it: bytewise). The order is total, so a resumed or repeated job
  appends the same sequence.
- **Ticks.** One tick at the end of every hour in which the history has an event (its
  time is the next whole hour), and one at every UTC midnight the history crosses
  (after its first event, up to its last). Each tick is placed after every history event
  before its time and before any event at or after it. Two rules giving the same time
  give one tick. Hours, not the live ticker's minutes: a deadline fires dated at its own
  time whenever the clock passes it, and a user's own deadlines before their event fire
  before it (the fold's catch-up), so coarser ticks change only when a change is
  recorded, never what it is or when it took effect; a sparse year of history (about
  one event a minute) carries at most 8,760 ticks instead of one per event, and every
  tick goes to every partition.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

TICK_US = 3_600_000_000  # an hour
DAY_US = 86_400_000_000
# Rank of each kind among events at the same microsecond.
IDENTIFY_RANK = 0
TRACK_RANK = 1

SortKey = tuple[int, int, uuid.UUID]


def sort_key(event_time_us: int, kind_rank: int, log_id: uuid.UUID) -> SortKey:
    """Where an event goes in its history: (event time, kind rank, log id)."""
    return (event_time_us, kind_rank, log_id)


def next_tick(time_us: int) -> int:
    """The end of the hour `time_us` lies in (the next whole hour)."""
    return (time_us // TICK_US + 1) * TICK_US


def midnights(after_us: int, until_us: int) -> range:
    """Every UTC midnight m with after_us < m <= until_us."""
    first = (after_us // DAY_US + 1) * DAY_US
    return range(first, until_us + 1, DAY_US)


def due_ticks(previous_event_us: int, next_event_us: int | None) -> list[int]:
    """The ticks between two consecutive history events, in order: those after the event
    at `previous_event_us` and at or before `next_event_us` (None: the history ended)."""
    hour_end = next_tick(previous_event_us)
    until = hour_end if next_event_us is None else next_event_us
    ticks = set(midnights(previous_event_us, until))
    if hour_end <= until:
        ticks.add(hour_end)
    return sorted(ticks)


def history_ticks(event_times: Iterable[int]) -> list[int]:
    """Every tick of a whole history (the rule above, stated once more for checking)."""
    times = sorted(event_times)
    if not times:
        return []
    ticks = {next_tick(t) for t in times}
    ticks.update(midnights(times[0], times[-1]))
    return sorted(ticks)
