"""The lifecycle state machine, scenario by scenario (table-driven)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from services.projector.domain.engine import Engine
from services.projector.domain.policy import AppPolicy, LifecyclePolicy
from tests.support.logevents import DAY, HOUR, T0, tick, ticks, track


@dataclass(frozen=True)
class Step:
    """(from, to, cause, effective day offset from T0 in days, correction)."""

    frm: str
    to: str
    cause: str
    day: float
    correction: bool = False


def run(events: list, policy: LifecyclePolicy | None = None) -> list[Step]:
    engine = Engine(AppPolicy(lifecycle=policy or LifecyclePolicy()))
    for position, event in enumerate(events, 1):
        engine.apply(event, position)
    return [
        Step(c.from_value, c.to_value, c.cause, round((c.effective_us - T0) / DAY, 3), c.correction)
        for c in engine.drain().changes
        if c.kind == "lifecycle"
    ]


def every(days: float, count: int, start: float = 0, user: str = "u") -> list:
    return [track(user, T0 + int((start + i * days) * DAY)) for i in range(count)]


def until(day: float, start: float = 0) -> list:
    return ticks(T0 + int(start * DAY), T0 + int(day * DAY), HOUR)


def merged(*groups: list) -> list:
    """Events and ticks in time order (received when they happened)."""
    items = [e for group in groups for e in group]
    return sorted(items, key=lambda e: getattr(e, "event_time_us", getattr(e, "tick_time_us", 0)))


NO_ADAPT = LifecyclePolicy(adaptive=False)

SCENARIOS = {
    "first event makes a user new": (
        [track("u", T0)],
        None,
        [Step("", "new", "event", 0)],
    ),
    "new becomes active after 7 days, on the clock": (
        merged([track("u", T0), track("u", T0 + 5 * DAY)], until(8)),
        None,
        [Step("", "new", "event", 0), Step("new", "active", "time", 7)],
    ),
    "silent user: dormant after 14 days, churned after 30 (absolute)": (
        merged([track("u", T0)], until(31)),
        NO_ADAPT,
        [
            Step("", "new", "event", 0),
            Step("new", "active", "time", 7),
            Step("active", "dormant", "time", 14),
            Step("dormant", "churned", "time", 30),
        ],
    ),
    "weekly user is dormant after two silent weeks": (
        merged(every(7, 6), until(35 + 15)),
        None,
        [
            Step("", "new", "event", 0),
            Step("new", "active", "event", 7),  # the day-7 visit finds the user no longer new
            Step("active", "dormant", "time", 35 + 14),
        ],
    ),
    "daily user is dormant after two silent days": (
        merged(every(1, 10), until(9 + 3)),
        None,
        [
            Step("", "new", "event", 0),
            Step("new", "active", "event", 7),
            Step("active", "dormant", "time", 9 + 2),
        ],
    ),
    "without enough history the absolute threshold applies": (
        merged(every(1, 3), until(2 + 15)),
        None,
        [
            Step("", "new", "event", 0),
            Step("new", "active", "time", 7),
            Step("active", "dormant", "time", 2 + 14),
        ],
    ),
    "dormant user comes back: reactivated, then active after 7 days": (
        merged([track("u", T0)], until(20), [track("u", T0 + 20 * DAY)], until(28, 20)),
        NO_ADAPT,
        [
            Step("", "new", "event", 0),
            Step("new", "active", "time", 7),
            Step("active", "dormant", "time", 14),
            Step("dormant", "reactivated", "event", 20),
            Step("reactivated", "active", "time", 27),
        ],
    ),
    "uninstall churns at once; coming back reactivates": (
        merged(
            [track("u", T0), track("u", T0 + DAY, "$app_uninstalled")],
            until(3),
            [track("u", T0 + 3 * DAY + HOUR)],
        ),
        None,
        [
            Step("", "new", "event", 0),
            Step("new", "churned", "event", 1),
            Step("churned", "reactivated", "event", round(3 + 1 / 24, 3)),
        ],
    ),
    "account closed churns at once": (
        [track("u", T0), track("u", T0 + HOUR, "$account_closed")],
        None,
        [Step("", "new", "event", 0), Step("new", "churned", "event", round(1 / 24, 3))],
    ),
    "12 active days in 28 make a user loyal; loyalty lapses as days leave the window": (
        merged(every(1, 12, start=10), until(50)),
        LifecyclePolicy(adaptive=False, dormant_days=30, churn_days=60),
        [
            Step("", "new", "event", 10),
            Step("new", "active", "event", 17),
            Step("active", "loyal", "event", 21),
            Step("loyal", "active", "time", 38),
        ],
    ),
    "no clock, no inactivity: transitions wait for the recorded time": (
        [track("u", T0), track("v", T0 + 40 * DAY)],
        NO_ADAPT,
        [Step("", "new", "event", 0), Step("", "new", "event", 40)],  # u is still new
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_lifecycle_scenario(name: str) -> None:
    events, policy, expected = SCENARIOS[name]
    assert run(events, policy) == expected


def test_late_event_before_dormancy_is_a_correction() -> None:
    events = merged([track("u", T0)], until(15))  # dormant at day 14 (absolute)
    late = track("u", T0 + 13 * DAY, received=T0 + 15 * DAY)  # happened before, arrives now
    steps = run([*events, late], NO_ADAPT)
    assert steps[-2:] == [
        Step("active", "dormant", "time", 14),
        Step("dormant", "active", "late_event", 14, correction=True),
    ]


def test_late_event_after_dormancy_began_is_a_plain_reactivation() -> None:
    events = merged([track("u", T0)], until(16))
    late = track("u", T0 + 15 * DAY, received=T0 + 16 * DAY)
    steps = run([*events, late], NO_ADAPT)
    assert steps[-1] == Step("dormant", "reactivated", "event", 15)


def test_events_older_than_the_late_limit_do_not_change_lifecycle() -> None:
    events = merged([track("u", T0)], until(20))
    too_late = track("u", T0 + 12 * DAY, received=T0 + 20 * DAY)
    steps = run([*events, too_late], LifecyclePolicy(adaptive=False, late_limit_days=7))
    assert steps[-1] == Step("active", "dormant", "time", 14)


def test_many_deadlines_passed_at_once_fire_in_order() -> None:
    # One tick 40 days later: new->active->dormant->churned all happen, in time order.
    steps = run([track("u", T0), tick(T0 + 40 * DAY)], NO_ADAPT)
    assert [(s.to, s.day) for s in steps] == [
        ("new", 0),
        ("active", 7),
        ("dormant", 14),
        ("churned", 30),
    ]


def test_anonymous_history_joins_the_identified_user() -> None:
    from tests.support.logevents import identify

    engine = Engine(AppPolicy(lifecycle=NO_ADAPT))
    engine.apply(track("", T0, anonymous_id="device-1"), 1)
    engine.apply(identify("alice", T0 + HOUR, anonymous_id="device-1"), 2)
    engine.apply(track("", T0 + 2 * HOUR, anonymous_id="device-1"), 3)
    drained = engine.drain()
    assert ("app", "anonymous:device-1") in drained.deleted_users
    alice = engine.users[("app", "alice")]
    assert alice.event_count == 2
    assert alice.first_active_us == T0
    assert alice.state == "new"
