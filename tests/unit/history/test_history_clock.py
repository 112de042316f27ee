"""The tick rule of a history import and the order of its events (the projector's contract)."""

from __future__ import annotations

import itertools
import random
import uuid
from datetime import UTC, datetime

from services.eventlog.events import datetime_to_us
from services.ingest.domain.history_clock import (
    IDENTIFY_RANK,
    TRACK_RANK,
    due_ticks,
    history_ticks,
    next_tick,
    sort_key,
)


def us(text: str) -> int:
    return datetime_to_us(datetime.fromisoformat(text).replace(tzinfo=UTC))


def test_a_tick_ends_every_hour_with_an_event_and_no_other_hour() -> None:
    times = [us("2025-03-01T10:00:05"), us("2025-03-01T10:59:59"), us("2025-03-01T13:00:00")]
    assert history_ticks(times) == [us("2025-03-01T11:00:00"), us("2025-03-01T14:00:00")]


def test_every_midnight_the_history_crosses_ticks_even_without_events() -> None:
    times = [us("2025-03-01T23:00:00"), us("2025-03-04T01:30:10")]
    assert history_ticks(times) == [
        us("2025-03-02T00:00:00"),
        us("2025-03-03T00:00:00"),
        us("2025-03-04T00:00:00"),
        us("2025-03-04T02:00:00"),
    ]


def test_an_hour_ending_at_midnight_gives_one_tick() -> None:
    times = [us("2025-03-01T23:59:30"), us("2025-03-02T00:00:00")]
    assert history_ticks(times) == [us("2025-03-02T00:00:00"), us("2025-03-02T01:00:00")]


def test_a_tick_goes_after_events_before_it_and_before_events_at_its_time() -> None:
    # An event exactly at an hour's end comes after that hour's tick.
    previous, at_tick = us("2025-03-01T10:00:30"), us("2025-03-01T11:00:00")
    assert due_ticks(previous, at_tick) == [at_tick]
    # Events within one hour have no tick between them.
    assert due_ticks(previous, us("2025-03-01T10:59:59")) == []
    # After the last event: the end of its hour.
    assert due_ticks(previous, None) == [next_tick(previous)]


def test_the_ticks_between_consecutive_events_make_up_the_whole_rule() -> None:
    rng = random.Random(7)
    start = us("2025-01-01T00:00:00")
    times = sorted(start + rng.randrange(0, 20 * 86_400_000_000) for _ in range(300))
    times += [times[-1]] * 3  # events at the same microsecond
    times.sort()
    stepped: list[int] = []
    for previous, following in zip(times, [*times[1:], None], strict=True):
        stepped.extend(t for t in due_ticks(previous, following) if t not in stepped)
    assert stepped == history_ticks(times)
    # Each tick is after every event before its time and before every event at or after it.
    for previous, following in itertools.pairwise(times):
        assert all(previous < t <= following for t in due_ticks(previous, following))


def test_identify_sorts_before_track_at_the_same_time_then_by_log_id() -> None:
    low, high = uuid.UUID(int=1), uuid.UUID(int=2**127)
    keys = [
        sort_key(5, TRACK_RANK, low),
        sort_key(5, IDENTIFY_RANK, high),
        sort_key(4, TRACK_RANK, high),
        sort_key(5, IDENTIFY_RANK, low),
    ]
    assert sorted(keys) == [
        (4, TRACK_RANK, high),
        (5, IDENTIFY_RANK, low),
        (5, IDENTIFY_RANK, high),
        (5, TRACK_RANK, low),
    ]


def test_log_ids_compare_as_postgresql_compares_uuids_bytewise() -> None:
    ids = [uuid.uuid4() for _ in range(200)]
    assert sorted(ids) == sorted(ids, key=lambda u: u.bytes)
