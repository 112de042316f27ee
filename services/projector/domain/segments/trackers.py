"""Trackers: the per-user state event conditions need, kept as events arrive.

Several segments share a tracker when their conditions watch the same events
(same name, filters, window and property). A tracker's state is JSON-native
so it is stored with the user, and mergeable so a version built from history
(as of its definition's position) joins the state tracked live since then.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from services.common.segments.definition import Filter, TimeValue

WINDOW = "window"  # state: [[t, value|None], ...] sorted by t, t > now - window
TOTAL = "total"  # state: [count, sum, min|None, max|None, values]
LAST = "last"  # state: [t]
INACTION = "inaction"  # state: [last did|None, last not_did|None]


@dataclass(frozen=True)
class TrackerSpec:
    kind: str
    name: str
    where: tuple[Filter, ...] = ()
    window_us: int | None = None
    prop: str = ""  # the numeric property aggregated
    other: str = ""  # inaction: the event that ends it

    @functools.cached_property
    def key(self) -> str:
        filters = "\x1d".join(f.key() for f in self.where)
        return "\x1f".join(
            (self.kind, self.name, filters, str(self.window_us or 0), self.prop, self.other)
        )

    @functools.cached_property
    def matches(self) -> Callable[[Mapping, Mapping, Mapping], bool]:
        """Whether an event's (properties, time properties, context) pass the filters."""
        return matcher(self.where)

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, self.other) if self.kind == INACTION else (self.name,)


EventView = tuple[str, int, Mapping[str, Any], Mapping[str, Any], Mapping[str, Any]]
"""(name, event time, properties, time properties, context) of an event."""


def lookup(
    path: str, props: Mapping[str, Any], times: Mapping[str, Any], ctx: Mapping[str, Any]
) -> Any:
    if path.startswith("context."):
        return ctx.get(path[8:])
    if path in props:
        return props[path]
    if path in times:
        value = times[path]
        return [TimeValue(v) for v in value] if isinstance(value, list) else TimeValue(value)
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, TimeValue):
        return float(value.us)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def compare(actual: Any, op: str, expected: Any) -> bool:
    """The operators of traits and property filters. A missing value satisfies only "!="."""
    if op == "exists":
        return actual is not None
    if actual is None:
        return op == "!="
    if op == "=":
        return _same(actual, expected)
    if op == "!=":
        return not _same(actual, expected)
    if op == "in":
        return any(_same(actual, e) for e in expected)
    if op == "contains":
        if isinstance(actual, list):
            return any(_same(a, expected) for a in actual)
        return isinstance(actual, str) and isinstance(expected, str) and expected in actual
    if op == "starts_with":
        return isinstance(actual, str) and isinstance(expected, str) and actual.startswith(expected)
    a, e = _number(actual), _number(expected)
    if a is None or e is None or isinstance(actual, TimeValue) != isinstance(expected, TimeValue):
        return False
    if op == "<":
        return a < e
    if op == "<=":
        return a <= e
    if op == ">":
        return a > e
    return a >= e  # ">="


def _same(actual: Any, expected: Any) -> bool:
    if isinstance(actual, bool) or isinstance(expected, bool):
        return isinstance(actual, bool) and isinstance(expected, bool) and actual == expected
    if isinstance(actual, TimeValue) or isinstance(expected, TimeValue):
        return actual == expected
    if isinstance(actual, int | float) and isinstance(expected, int | float):
        return float(actual) == float(expected)
    return bool(actual == expected)


def matcher(where: tuple[Filter, ...]) -> Callable[[Mapping, Mapping, Mapping], bool]:
    if not where:
        return lambda _p, _t, _c: True

    def matches(props: Mapping, times: Mapping, ctx: Mapping) -> bool:
        return all(compare(lookup(f.property, props, times, ctx), f.op, f.value) for f in where)

    return matches


def observe(
    spec: TrackerSpec,
    state: Any,
    name: str,
    at: int,
    props: Mapping,
    times: Mapping,
    ctx: Mapping,
    now: int,
) -> Any:
    """The tracker's state after a (matching-by-name) event; None if it stays absent."""
    kind = spec.kind
    if kind == INACTION:
        state = state or [None, None]
        slot = 0 if name == spec.name else 1
        if slot == 0 and not spec.matches(props, times, ctx):
            return state if state != [None, None] else None
        if state[slot] is None or at > state[slot]:
            state[slot] = at
        return state
    if not spec.matches(props, times, ctx):
        return state
    if kind == LAST:
        if state is None or at > state[0]:
            return [at]
        return state
    value = _number(lookup(spec.prop, props, times, ctx)) if spec.prop else None
    if kind == TOTAL:
        state = state or [0, 0.0, None, None, 0]
        state[0] += 1
        if value is not None:
            state[1] += value
            state[2] = value if state[2] is None else min(state[2], value)
            state[3] = value if state[3] is None else max(state[3], value)
            state[4] += 1
        return state
    # WINDOW: keep only what is still inside it.
    assert spec.window_us is not None
    if at <= now - spec.window_us:
        return state
    state = state if state is not None else []
    index = bisect.bisect_right(state, at, key=lambda entry: entry[0])
    state.insert(index, [at, value])
    return state


def prune(spec: TrackerSpec, state: Any, now: int) -> Any:
    """Drop window entries that left the window; None when nothing is left."""
    if spec.kind != WINDOW or not state:
        return state
    edge = now - spec.window_us  # type: ignore[operator]
    if state[0][0] > edge:
        return state
    index = bisect.bisect_right(state, edge, key=lambda entry: entry[0])
    del state[:index]
    return state or None


def merge(spec: TrackerSpec, older: Any, newer: Any) -> Any:
    """State of everything `older` saw, then everything `newer` saw."""
    if older is None:
        return newer
    if newer is None:
        return older
    if spec.kind == WINDOW:
        return sorted([*older, *newer], key=lambda entry: entry[0])
    if spec.kind == TOTAL:
        lows = [v for v in (older[2], newer[2]) if v is not None]
        highs = [v for v in (older[3], newer[3]) if v is not None]
        return [
            older[0] + newer[0],
            older[1] + newer[1],
            min(lows) if lows else None,
            max(highs) if highs else None,
            older[4] + newer[4],
        ]
    if spec.kind == LAST:
        return [max(older[0], newer[0])]
    return [_latest(older[0], newer[0]), _latest(older[1], newer[1])]


def _latest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)
