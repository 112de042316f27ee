"""Compile a definition into fast membership and boundary functions over a user.

`member(user, now)` says whether the user is in the segment at `now` (the
recorded clock, or an event's time); `boundary(user, now)` is the earliest
later time at which that could change without any new event (a window entry
leaving, a recency or inaction deadline passing), or None.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from haversine import haversine

from services.common.segments.definition import (
    AllOf,
    AnyOf,
    Definition,
    Events,
    FirstSeen,
    Geo,
    Inaction,
    Lifecycle,
    Node,
    NoneOf,
    Recency,
    Rfm,
    SegmentRef,
    Trait,
)
from services.projector.domain import location
from services.projector.domain.segments import trackers as tr
from services.projector.domain.user import User

Member = Callable[[User, int], bool]
Boundary = Callable[[User, int], "int | None"]

# What re-evaluation a change of the user calls for.
USES_LIFECYCLE = "lifecycle"
USES_RFM = "rfm"
USES_PROFILE = "profile"  # traits, location
USES_FIRST_SEEN = "first_seen"


@dataclass
class Compiled:
    segment_id: str
    version: int
    member: Member
    boundary: Boundary
    trackers: dict[str, tr.TrackerSpec] = field(default_factory=dict)
    uses: set[str] = field(default_factory=set)
    references: frozenset[str] = frozenset()

    @functools.cached_property
    def timed(self) -> bool:
        """Whether membership can change by time alone (asked once compiled)."""
        return bool(self.trackers) or USES_FIRST_SEEN in self.uses


def _never(_user: User, _now: int) -> int | None:
    return None


def _earliest(values: list[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _compare_number(actual: float | None, op: str, expected: float) -> bool:
    if actual is None:
        return False
    return {
        "=": actual == expected,
        "!=": actual != expected,
        "<": actual < expected,
        "<=": actual <= expected,
        ">": actual > expected,
        ">=": actual >= expected,
    }[op]


class _Compiler:
    def __init__(self, compiled: Compiled) -> None:
        self.c = compiled

    def node(self, node: Node) -> tuple[Member, Boundary]:
        method = getattr(self, f"_{type(node).__name__.lower()}")
        return method(node)  # type: ignore[no-any-return]

    def _children(self, children: tuple[Node, ...]) -> tuple[list[Member], Boundary]:
        parts = [self.node(child) for child in children]
        members = [m for m, _ in parts]
        bounds = [b for _, b in parts if b is not _never]

        def boundary(user: User, now: int) -> int | None:
            return _earliest([b(user, now) for b in bounds]) if bounds else None

        return members, boundary if bounds else _never

    def _allof(self, node: AllOf) -> tuple[Member, Boundary]:
        members, boundary = self._children(node.children)
        return (lambda user, now: all(m(user, now) for m in members)), boundary

    def _anyof(self, node: AnyOf) -> tuple[Member, Boundary]:
        members, boundary = self._children(node.children)
        return (lambda user, now: any(m(user, now) for m in members)), boundary

    def _noneof(self, node: NoneOf) -> tuple[Member, Boundary]:
        members, boundary = self._children(node.children)
        return (lambda user, now: not any(m(user, now) for m in members)), boundary

    def _trait(self, node: Trait) -> tuple[Member, Boundary]:
        self.c.uses.add(USES_PROFILE)
        key, op, value = node.key, node.op, node.value

        def member(user: User, _now: int) -> bool:
            return tr.compare(tr.lookup(key, user.traits, user.time_traits, {}), op, value)

        return member, _never

    def _geo(self, node: Geo) -> tuple[Member, Boundary]:
        self.c.uses.add(USES_PROFILE)

        def member(user: User, _now: int) -> bool:
            country, city, lat, lng = location.of_user(user)
            if node.countries and country.upper() in node.countries:
                return True
            if node.cities and city.casefold() in node.cities:
                return True
            if node.center is not None and lat is not None and lng is not None:
                return bool(haversine(node.center, (lat, lng)) <= node.radius_km)
            return False

        return member, _never

    def _lifecycle(self, node: Lifecycle) -> tuple[Member, Boundary]:
        self.c.uses.add(USES_LIFECYCLE)
        states = node.states
        return (lambda user, _now: user.state in states), _never

    def _rfm(self, node: Rfm) -> tuple[Member, Boundary]:
        self.c.uses.add(USES_RFM)
        groups = node.groups
        return (lambda user, _now: user.rfm_group in groups), _never

    def _track(self, spec: tr.TrackerSpec) -> str:
        self.c.trackers[spec.key] = spec
        return spec.key

    def _events(self, node: Events) -> tuple[Member, Boundary]:
        op, expected, aggregate = node.op, node.value, node.aggregate
        if node.window_us is None:
            key = self._track(tr.TrackerSpec(tr.TOTAL, node.name, node.where, None, node.property))

            def member_total(user: User, _now: int) -> bool:
                state = user.trackers.get(key)
                count, total, low, high, n = state if state else (0, 0.0, None, None, 0)
                actual: float | None = {
                    "count": float(count),
                    "sum": total,
                    "min": low,
                    "max": high,
                    "avg": total / n if n else None,
                }[aggregate]
                return _compare_number(actual, op, expected)

            return member_total, _never

        window = node.window_us
        key = self._track(tr.TrackerSpec(tr.WINDOW, node.name, node.where, window, node.property))

        def member_window(user: User, now: int) -> bool:
            entries = user.trackers.get(key) or ()
            edge = now - window
            if aggregate == "count":
                count = sum(1 for t, _ in entries if t > edge)
                return _compare_number(float(count), op, expected)
            values = [v for t, v in entries if t > edge and v is not None]
            if aggregate == "sum":
                actual: float | None = float(sum(values))
            elif not values:
                actual = None
            elif aggregate == "min":
                actual = min(values)
            elif aggregate == "max":
                actual = max(values)
            else:
                actual = sum(values) / len(values)
            return _compare_number(actual, op, expected)

        def boundary(user: User, now: int) -> int | None:
            edge = now - window
            for t, _ in user.trackers.get(key) or ():
                if t > edge:
                    return t + window  # the oldest entry still inside leaves then
            return None

        return member_window, boundary

    def _recency(self, node: Recency) -> tuple[Member, Boundary]:
        key = self._track(tr.TrackerSpec(tr.LAST, node.name, node.where))
        more, less = node.more_than_us, node.less_than_us
        span: int = more if more is not None else less  # type: ignore[assignment]

        def member(user: User, now: int) -> bool:
            state = user.trackers.get(key)
            if state is None:
                return False
            gap = now - state[0]
            return gap >= span if more is not None else gap < span

        def boundary(user: User, now: int) -> int | None:
            state = user.trackers.get(key)
            if state is None:
                return None
            when = state[0] + span
            return when if when > now else None

        return member, boundary

    def _firstseen(self, node: FirstSeen) -> tuple[Member, Boundary]:
        self.c.uses.add(USES_FIRST_SEEN)

        def member(user: User, now: int) -> bool:
            first = user.first_seen_us
            if first is None:
                return False
            if node.before_us is not None and not first < node.before_us:
                return False
            if node.after_us is not None and not first > node.after_us:
                return False
            if node.more_than_us is not None and not now - first >= node.more_than_us:
                return False
            return not (node.less_than_us is not None and not now - first < node.less_than_us)

        def boundary(user: User, now: int) -> int | None:
            first = user.first_seen_us
            if first is None:
                return None
            spans = [s for s in (node.more_than_us, node.less_than_us) if s is not None]
            return _earliest([first + s if first + s > now else None for s in spans])

        return member, boundary if (node.more_than_us or node.less_than_us) else _never

    def _inaction(self, node: Inaction) -> tuple[Member, Boundary]:
        key = self._track(tr.TrackerSpec(tr.INACTION, node.did, node.where, other=node.not_did))
        within = node.within_us

        def member(user: User, now: int) -> bool:
            state = user.trackers.get(key)
            if state is None or state[0] is None:
                return False
            did, ended = state
            return (ended is None or ended < did) and now >= did + within

        def boundary(user: User, now: int) -> int | None:
            state = user.trackers.get(key)
            if state is None or state[0] is None:
                return None
            did, ended = state
            when = did + within
            return when if (ended is None or ended < did) and when > now else None

        return member, boundary

    def _segmentref(self, node: SegmentRef) -> tuple[Member, Boundary]:
        segment_id = node.segment_id
        return (lambda user, _now: segment_id in user.memberships), _never


def compile_segment(segment_id: str, version: int, definition: Definition) -> Compiled:
    compiled = Compiled(
        segment_id, version, _never_member, _never, references=definition.references
    )
    member, boundary = _Compiler(compiled).node(definition.root)
    compiled.member = member
    compiled.boundary = boundary
    return compiled


def _never_member(_user: User, _now: int) -> bool:
    return False


def describe(compiled: Compiled) -> dict[str, Any]:
    return {
        "segment_id": compiled.segment_id,
        "version": compiled.version,
        "trackers": sorted(compiled.trackers),
        "uses": sorted(compiled.uses),
    }
