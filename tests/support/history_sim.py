"""A small app's 90 days, told twice: live (events as they happen, the recorded clock
ticking every hour) and as an imported history (the same events, sorted, with the app's
own ticks): what the differential tests of history mode compare."""

from __future__ import annotations

import random
from typing import Any

import psycopg

from services.eventlog.events import EventTracked, UserIdentified
from services.eventlog.segments import Segment
from services.eventlog.store import EventLog
from tests.support.logevents import DAY, HOUR, MINUTE, T0, identify, purchase, tick, track

DAYS = 90
SECOND = 1_000_000
# Every kind of condition whose dating the clock drives, defined before any event.
SEGMENTS: dict[str, dict[str, Any]] = {
    "carted-3d": {"events": {"name": "Added to Cart", "window": "3d", "op": ">=", "value": 1}},
    "abandoned": {
        "inaction": {"did": "Added to Cart", "not_did": "Order Completed", "within": "24h"}
    },
    "lapsed": {"recency": {"name": "App Opened", "more_than": "10d"}},
    "pro": {"trait": {"key": "plan", "op": "=", "value": "pro"}},
    "at-risk": {"lifecycle": ["dormant", "churned"]},
    "buyers": {"rfm": ["new_customers", "champions", "loyal", "potential_loyalists"]},
}
# RFM scores settle at each UTC midnight: a tick both clocks have.
POLICIES = '{"*": {"rfm": {"recompute_minutes": 1440}}}'


def simulated(app: str, seed: int, users: int = 60, days: int = DAYS) -> list[Any]:
    """Users of several habits (daily, weekly, fading, coming back) over `days` days from
    T0: opens, carts, purchases and Identify calls, sorted by time (no two at one time)."""
    rng = random.Random(seed)
    out: list[EventTracked | UserIdentified] = []
    for number in range(users):
        user = f"u{number:03d}"
        habit = rng.choice(["daily", "weekly", "fading", "returning"])
        first = rng.randrange(0, 30)
        out.append(identify(user, _at(rng, first), app=app, traits={"plan": "free"}))
        for day in range(first, days):
            if not _active(habit, day - first, rng):
                continue
            at = _at(rng, day)
            out.append(track(user, at, "App Opened", app=app))
            if rng.random() < 0.3:
                out.append(track(user, at + 5 * MINUTE, "Added to Cart", app=app))
                if rng.random() < 0.5:
                    amount = float(rng.randrange(5, 200))
                    out.append(purchase(user, at + 9 * MINUTE, amount, app=app))
            if rng.random() < 0.02:
                plan = rng.choice(["free", "pro"])
                out.append(identify(user, at + 20 * MINUTE, app=app, traits={"plan": plan}))
    return sorted(out, key=lambda e: e.event_time_us)


def _at(rng: random.Random, day: int) -> int:
    """A time in day `day` (to the second, never the last hour: the day's events stay in it)."""
    return T0 + day * DAY + rng.randrange(0, 22 * 3600) * SECOND + rng.randrange(1, 999_999)


def _active(habit: str, age: int, rng: random.Random) -> bool:
    if habit == "daily":
        return rng.random() < 0.85
    if habit == "weekly":
        return age % 7 == 0
    if habit == "fading":
        return rng.random() < 0.9 / (1 + age / 5)
    return age < 10 or 45 <= age < 55  # gone for five weeks, then back


def live(events: list[Any], until: int) -> list[object]:
    """`events` as they arrive live: the recorded clock ticking every hour from T0 to
    `until`, each event right after the last tick before it."""
    out: list[object] = []
    next_tick = T0
    for event in events:
        while next_tick <= event.event_time_us:
            out.append(tick(next_tick))
            next_tick += HOUR
        out.append(event)
    while next_tick <= until:
        out.append(tick(next_tick))
        next_tick += HOUR
    return out


def define(log: EventLog, app: str) -> None:
    for segment_id, condition in SEGMENTS.items():
        log.save(
            Segment(
                app_id=app,
                segment_id=segment_id,
                display_name=segment_id,
                description="",
                definition=condition,
            )
        )


def outcome(database_url: str, app: str) -> dict[str, Any]:
    """What an app ended with: profiles, memberships, and every change (kind, user, from,
    to, effective time, segment), without what names the log positions or the clock."""
    with psycopg.connect(database_url) as conn:
        profiles = conn.execute(
            "SELECT user_id, lifecycle_state, lifecycle_since, rfm_group, event_count,"
            " active_days, first_seen, last_seen, traits FROM projector_profiles"
            " WHERE app_id = %s ORDER BY user_id",
            (app,),
        ).fetchall()
        members = conn.execute(
            "SELECT segment_id, user_id, since_us FROM segment_members WHERE app_id = %s"
            " ORDER BY 1, 2",
            (app,),
        ).fetchall()
        changes = conn.execute(
            "SELECT kind, user_id, from_value, to_value, effective_us,"
            " coalesce(details->>'segment_id', '') FROM projector_changes WHERE app_id = %s",
            (app,),
        ).fetchall()
    return {"profiles": profiles, "members": members, "changes": sorted(changes)}
