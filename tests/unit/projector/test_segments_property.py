"""Incremental membership equals a from-scratch evaluation of the whole history, at every
tick, for random histories (late and slightly early events included)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from services.projector.domain.engine import Engine
from tests.support.logevents import HOUR, MINUTE, T0, tick, track
from tests.support.segments import Definitions

SEGMENTS: dict[str, dict[str, Any]] = {
    "s1": {"events": {"name": "A", "window": "2h", "op": ">=", "value": 2}},
    "s2": {
        "events": {
            "name": "A",
            "where": [{"property": "k", "op": "=", "value": "x"}],
            "window": "3h",
            "aggregate": "sum",
            "property": "v",
            "op": ">",
            "value": 10,
        }
    },
    "s3": {"recency": {"name": "B", "less_than": "1h"}},
    "s4": {"inaction": {"did": "A", "not_did": "B", "within": "90m"}},
    "s5": {
        "any": [
            {"segment": "s1"},
            {"none": [{"events": {"name": "C", "window": "1h", "value": 1}}]},
        ]
    },
    "s6": {"first_seen": {"more_than": "5h"}},
    "s7": {"events": {"name": "B", "aggregate": "max", "property": "v", "op": ">=", "value": 8}},
    "s8": {
        "events": {
            "name": "A",
            "window": "45m",
            "aggregate": "avg",
            "property": "v",
            "op": "<",
            "value": 5,
        }
    },
}
WINDOWS = {"s1": 2 * HOUR, "s2": 3 * HOUR, "s8": 45 * MINUTE}


def reference(segment_id: str, history: list[tuple[str, int, dict]], now: int) -> bool:
    """What the definition means, computed directly from the user's events."""

    def window(name: str, span: int, keep=lambda p: True) -> list[dict]:
        return [p for n, t, p in history if n == name and t > now - span and keep(p)]

    if segment_id == "s1":
        return len(window("A", WINDOWS["s1"])) >= 2
    if segment_id == "s2":
        return sum(p["v"] for p in window("A", WINDOWS["s2"], lambda p: p["k"] == "x")) > 10
    if segment_id == "s3":
        times = [t for n, t, _ in history if n == "B"]
        return bool(times) and now - max(times) < HOUR
    if segment_id == "s4":
        a = [t for n, t, _ in history if n == "A"]
        b = [t for n, t, _ in history if n == "B"]
        if not a:
            return False
        last_a = max(a)
        return (not b or max(b) < last_a) and now >= last_a + 90 * MINUTE
    if segment_id == "s5":
        return reference("s1", history, now) or not window("C", HOUR)
    if segment_id == "s6":
        return bool(history) and now - min(t for _, t, _ in history) >= 5 * HOUR
    if segment_id == "s7":
        values = [p["v"] for n, _, p in history if n == "B"]
        return bool(values) and max(values) >= 8
    values = [p["v"] for p in window("A", WINDOWS["s8"])]
    return bool(values) and sum(values) / len(values) < 5


def steps_of(users: str, lateness: list[int]) -> st.SearchStrategy:
    """Ticks (minutes on) and events (user, name, minutes late or -1 for early, v, k)."""
    return st.one_of(
        st.tuples(st.just("tick"), st.sampled_from([1, 5, 15, 30, 45, 60, 90, 120])),
        st.tuples(
            st.just("event"),
            st.sampled_from(users),
            st.sampled_from("ABC"),
            st.sampled_from(lateness),
            st.integers(min_value=0, max_value=10),
            st.sampled_from("xy"),
        ),
    )


step = steps_of("uvw", [-1, 0, 0, 0, 5, 30, 45, 60, 90, 120, 150])

EDGE = [  # an entry exactly on the window's edge is outside it
    ("event", "u", "A", 0, 1, "x"),
    ("event", "u", "A", 0, 1, "x"),
    ("tick", 120),
    ("tick", 1),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(steps=EDGE)
@given(steps=st.lists(step, min_size=1, max_size=100))
def test_incremental_membership_equals_from_scratch_at_every_tick(steps: list) -> None:
    engine = Engine()
    definitions = Definitions()
    position = 0

    def apply(event: object) -> None:
        nonlocal position
        position += 1
        engine.apply(event, position)

    now = T0
    apply(tick(now))
    for segment_id, condition in SEGMENTS.items():
        for event in definitions.define(segment_id, condition):
            apply(event)
        for event in definitions.built(segment_id, position):
            apply(event)
    histories: dict[str, list[tuple[str, int, dict]]] = {}
    last_change: dict[tuple[str, str], tuple[str, int]] = {}
    for item in steps:
        if item[0] == "tick":
            now += item[1] * MINUTE
            apply(tick(now))
            for change in engine.drain().changes:
                if change.kind != "membership":
                    continue
                # Late events included, each user's changes of a segment stay in time order
                # and never lie ahead of what their cause allows.
                key = (change.user_id, change.segment_id)
                previous = last_change.get(key, ("", 0))
                assert change.effective_us >= previous[1], key
                assert change.effective_us <= max(change.recorded_us, now + 20_000_000)
                last_change[key] = (change.to_value, change.effective_us)
            for user, history in histories.items():
                members = engine.users[("app", user)].memberships
                for segment_id in SEGMENTS:
                    expected = reference(segment_id, history, now)
                    assert (segment_id in members) == expected, (user, segment_id, now)
                    if expected:  # the membership is dated by its last entry
                        assert last_change[(user, segment_id)] == (
                            "entered",
                            members[segment_id][1],
                        )
        else:
            _, user, name, late, value, kind = item
            when = now + 20_000_000 if late < 0 else now - late * MINUTE
            props = {"v": float(value), "k": kind}
            apply(track(user, when, name, **props))
            histories.setdefault(user, []).append((name, when, props))


SPANS = (2 * HOUR, 3 * HOUR, HOUR, 90 * MINUTE, 5 * HOUR, 45 * MINUTE)  # every span above


def edges(segment_id: str, history: list[tuple[str, int, dict]], now: int) -> list[tuple]:
    """Every entry and exit up to `now` with the time it truly took effect: membership is
    piecewise constant, changing only at an event's time or an event's time plus a span."""
    times = sorted({t for _, t, _ in history} | {t + s for _, t, _ in history for s in SPANS})
    out: list[tuple] = []
    inside = False
    for moment in (t for t in times if t <= now):
        known = [h for h in history if h[1] <= moment]
        value = bool(known) and reference(segment_id, known, moment)
        if value != inside:
            out.append(("entered" if value else "exited", moment))
            inside = value
    return out


on_time = steps_of("uv", [-1, 0, 0])  # on the clock, or a little ahead of it (-1)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(on_time, min_size=1, max_size=60))
def test_every_change_is_dated_when_it_took_effect(steps: list) -> None:
    """With each user's events in time order (on the clock or ahead of it), the change
    stream of every user and segment is exactly the edges of the definition's meaning
    over time: an entry caused by an event at the event's time, one caused by time at its
    deadline, whenever the recorded clock happened to notice it."""
    engine = Engine()
    definitions = Definitions()
    log: list[object] = [tick(T0)]
    for segment_id, condition in SEGMENTS.items():
        log += definitions.define(segment_id, condition)
        log += definitions.built(segment_id, len(log))
    now = T0
    histories: dict[str, list[tuple[str, int, dict]]] = {}
    for item in [*steps, ("tick", 1)]:
        if item[0] == "tick":
            now += item[1] * MINUTE
            log.append(tick(now))
            continue
        _, user, name, early, value, kind = item
        history = histories.setdefault(user, [])
        when = max(now + (20_000_000 if early < 0 else 0), history[-1][1] if history else 0)
        props = {"v": float(value), "k": kind}
        log.append(track(user, when, name, **props))
        history.append((name, when, props))
    engine.apply_all((event, position) for position, event in enumerate(log, 1))
    published: dict[tuple[str, str], list[tuple]] = {}
    for change in engine.drain().changes:
        if change.kind == "membership":
            key = (change.user_id, change.segment_id)
            published.setdefault(key, []).append((change.to_value, change.effective_us))
            assert not change.correction
    for user, history in histories.items():
        for segment_id in SEGMENTS:
            dated = without_instants(published.get((user, segment_id), []))
            assert dated == edges(segment_id, history, now), (user, segment_id)


def without_instants(changes: list[tuple]) -> list[tuple]:
    """The changes without memberships (or absences) that lasted no time at all: two
    events of one instant are folded one after the other, the meaning sees them at once."""
    out: list[tuple] = []
    for change in changes:
        if out and out[-1][1] == change[1] and out[-1][0] != change[0]:
            out.pop()
        else:
            out.append(change)
    return out
