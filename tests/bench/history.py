"""Synthetic event histories for benchmarks, written straight into the event log."""

from __future__ import annotations

import random
from collections.abc import Iterator

from services.eventlog.store import EventLog
from tests.support.logevents import DAY, HOUR, T0, purchase, tick, track

NAMES = ("App Opened", "Viewed Product", "Added to Cart", "Searched")
CATEGORIES = ("shoes", "hats", "shirts", "bags", "watches")
COUNTRIES = ("DE", "FR", "US", "GB", "IN", "BR", "JP")


def synthetic(users: int, days: int, events_per_user_day: float, seed: int = 1) -> Iterator[object]:
    """Events of `users` users over `days` days, hourly ticks, ~5% purchases, in time order."""
    rng = random.Random(seed)
    # Habits: daily, weekly, occasional; some stop after a while.
    habit = [rng.choice((1.0, 0.3, 0.08)) * events_per_user_day for _ in range(users)]
    stops = [rng.randrange(days * 2) for _ in range(users)]
    country = [rng.choice(COUNTRIES) for _ in range(users)]
    for day in range(days):
        hourly: list[list[object]] = [[] for _ in range(24)]
        for user in range(users):
            if day > stops[user]:
                continue
            n = int(habit[user] + rng.random())
            for _ in range(n):
                at = T0 + day * DAY + rng.randrange(DAY)
                hour = (at - T0 - day * DAY) // HOUR
                if rng.random() < 0.05:
                    hourly[hour].append(
                        purchase(f"u{user}", at, round(rng.lognormvariate(3, 1), 2))
                    )
                else:
                    name = rng.choice(NAMES)
                    props = (
                        {"category": rng.choice(CATEGORIES)}
                        if "Product" in name or "Cart" in name
                        else {}
                    )
                    context = {"country": country[user]} if name == "App Opened" else None
                    hourly[hour].append(track(f"u{user}", at, name, context=context, **props))
        for hour, events in enumerate(hourly):
            yield from sorted(events, key=lambda e: e.event_time_us)  # type: ignore[attr-defined]
            yield tick(T0 + day * DAY + (hour + 1) * HOUR)


def write(log: EventLog, events: Iterator[object], chunk: int = 2000) -> int:
    """Append events in chunks; returns how many."""
    count = 0
    buffer: list[object] = []
    for event in events:
        buffer.append(event)
        if len(buffer) >= chunk:
            log.append_new([log.encode(e) for e in buffer])
            count += len(buffer)
            buffer = []
    if buffer:
        log.append_new([log.encode(e) for e in buffer])
        count += len(buffer)
    return count
