"""Segment definitions: the readable dict form (YAML, the log) parsed into condition nodes.

The dict form is what users write and what the log stores:

    all:                                   # also any: [...], none: [...]
      - trait: {key: plan, op: "=", value: pro}
      - trait: {key: signed_up, op: "<", time: "2026-01-01T00:00:00+01:00"}
      - geo: {within_km: 10, of: [52.52, 13.405]}
      - geo: {countries: [DE, AT], cities: [Berlin]}
      - lifecycle: [active, loyal]
      - rfm: [champions, at_risk]
      - events: {name: Added to Cart, where: [{property: category, op: "=", value: shoes}],
                 window: 30d, aggregate: count, op: ">=", value: 3}
      - recency: {name: App Opened, more_than: 7d}
      - first_seen: {before: "2026-01-01T00:00:00Z"}      # or after / more_than / less_than
      - inaction: {did: Added to Cart, not_did: Order Completed, within: 24h}
      - segment: other-segment

Every problem is reported with the path of the node that has it, e.g.
`condition.all[2].events.window: "3x" is not a duration like 30d, 24h or 15m`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.eventlog.events import datetime_to_us

LIFECYCLE_STATES = frozenset({"new", "active", "loyal", "dormant", "churned", "reactivated"})
RFM_GROUPS = frozenset(
    {
        "champions",
        "loyal",
        "potential_loyalists",
        "new_customers",
        "promising",
        "need_attention",
        "about_to_sleep",
        "at_risk",
        "cant_lose_them",
        "hibernating",
        "lost",
    }
)
COMPARISONS = frozenset({"=", "!=", "<", "<=", ">", ">="})
OPERATORS = COMPARISONS | {"in", "contains", "exists", "starts_with"}
AGGREGATES = frozenset({"count", "sum", "min", "max", "avg"})
SEGMENT_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d|w|y)")
_UNIT_US = {
    "s": 1_000_000,
    "m": 60_000_000,
    "h": 3_600_000_000,
    "d": 86_400_000_000,
    "w": 7 * 86_400_000_000,
    "y": 365 * 86_400_000_000,
}
MAX_DEPTH = 12
MAX_NODES = 200


class DefinitionError(ValueError):
    """Every problem of a definition, each as (path, message)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p}: {m}" for p, m in problems))


# A typed value: str, float, bool, or a timestamp (TimeValue).
@dataclass(frozen=True)
class TimeValue:
    us: int


Scalar = str | float | bool | TimeValue


@dataclass(frozen=True)
class Filter:
    property: str
    op: str
    value: Scalar | tuple[Scalar, ...] | None

    def key(self) -> str:
        return f"{self.property}\x1e{self.op}\x1e{self.value!r}"


@dataclass(frozen=True)
class AllOf:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class AnyOf:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class NoneOf:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Trait:
    key: str
    op: str
    value: Scalar | tuple[Scalar, ...] | None


@dataclass(frozen=True)
class Geo:
    center: tuple[float, float] | None
    radius_km: float
    countries: frozenset[str]
    cities: frozenset[str]


@dataclass(frozen=True)
class Lifecycle:
    states: frozenset[str]


@dataclass(frozen=True)
class Rfm:
    groups: frozenset[str]


@dataclass(frozen=True)
class Events:
    name: str
    where: tuple[Filter, ...]
    window_us: int | None
    aggregate: str
    property: str
    op: str
    value: float


@dataclass(frozen=True)
class Recency:
    name: str
    where: tuple[Filter, ...]
    more_than_us: int | None
    less_than_us: int | None


@dataclass(frozen=True)
class FirstSeen:
    before_us: int | None
    after_us: int | None
    more_than_us: int | None
    less_than_us: int | None


@dataclass(frozen=True)
class Inaction:
    did: str
    where: tuple[Filter, ...]
    not_did: str
    within_us: int


@dataclass(frozen=True)
class SegmentRef:
    segment_id: str


Node = (
    AllOf
    | AnyOf
    | NoneOf
    | Trait
    | Geo
    | Lifecycle
    | Rfm
    | Events
    | Recency
    | FirstSeen
    | Inaction
    | SegmentRef
)


def parse_duration(text: Any) -> int:
    """Microseconds of "30d", "24h", "15m", "90s", "2w", "1y"; ValueError otherwise."""
    if isinstance(text, int | float) and not isinstance(text, bool) and text > 0:
        return int(text * 1_000_000)
    match = _DURATION.fullmatch(str(text).strip()) if isinstance(text, str) else None
    if not match:
        msg = f"{text!r} is not a duration like 30d, 24h, 15m or 90s"
        raise ValueError(msg)
    us = int(float(match.group(1)) * _UNIT_US[match.group(2)])
    if us <= 0:
        msg = "must be longer than zero"
        raise ValueError(msg)
    return us


def format_duration(us: int) -> str:
    for unit in ("y", "w", "d", "h", "m", "s"):
        size = _UNIT_US[unit]
        if us % size == 0:
            return f"{us // size}{unit}"
    return f"{us / 1_000_000}s"


def parse_time(text: Any) -> int:
    """Microseconds of an ISO-8601 time with an offset ("...Z", "+01:00") or followed by an
    IANA zone ("2026-03-29T02:30:00 Europe/Berlin")."""
    if not isinstance(text, str):
        msg = f"{text!r} is not a time like 2026-01-01T00:00:00Z"
        raise ValueError(msg)
    value, _, zone = text.strip().partition(" ")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        msg = f"{text!r} is not an ISO-8601 time like 2026-01-01T00:00:00Z"
        raise ValueError(msg) from None
    if zone:
        if moment.tzinfo is not None:
            msg = "give either an offset or a time zone, not both"
            raise ValueError(msg)
        try:
            moment = moment.replace(tzinfo=ZoneInfo(zone))
        except (ZoneInfoNotFoundError, ValueError):
            msg = f"unknown IANA time zone {zone!r}"
            raise ValueError(msg) from None
    if moment.tzinfo is None:
        msg = f"{text!r} needs an offset (Z, +01:00) or an IANA zone"
        raise ValueError(msg)
    return datetime_to_us(moment)


class _Parser:
    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []
        self.nodes = 0
        self.segments: set[str] = set()

    def fail(self, path: str, message: str) -> None:
        self.problems.append((path, message))

    def node(self, data: Any, path: str, depth: int = 0) -> Node | None:
        self.nodes += 1
        if depth > MAX_DEPTH:
            self.fail(path, f"conditions nest at most {MAX_DEPTH} deep")
            return None
        if not isinstance(data, dict) or len(data) != 1:
            self.fail(
                path,
                "must be exactly one of all, any, none, trait, geo, lifecycle, rfm, events,"
                " recency, first_seen, inaction, segment",
            )
            return None
        ((kind, body),) = data.items()
        here = f"{path}.{kind}"
        method = getattr(self, f"_{kind}", None)
        if method is None:
            self.fail(path, f"unknown condition kind {kind!r}")
            return None
        if kind in ("all", "any", "none"):
            return method(body, here, depth)  # type: ignore[no-any-return]
        return method(body, here)  # type: ignore[no-any-return]

    def _combine(self, body: Any, path: str, depth: int) -> tuple[Node, ...]:
        if not isinstance(body, list) or not body:
            self.fail(path, "must be a non-empty list of conditions")
            return ()
        children = [self.node(child, f"{path}[{i}]", depth + 1) for i, child in enumerate(body)]
        return tuple(c for c in children if c is not None)

    def _all(self, body: Any, path: str, depth: int) -> Node:
        return AllOf(self._combine(body, path, depth))

    def _any(self, body: Any, path: str, depth: int) -> Node:
        return AnyOf(self._combine(body, path, depth))

    def _none(self, body: Any, path: str, depth: int) -> Node:
        return NoneOf(self._combine(body, path, depth))

    def _fields(self, body: Any, path: str, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(body, dict):
            self.fail(path, "must be a mapping")
            return {}
        for key in body:
            if key not in allowed:
                self.fail(f"{path}.{key}", f"unknown field (expected one of {sorted(allowed)})")
        return body

    def _scalar(self, value: Any, path: str) -> Scalar | None:
        if isinstance(value, bool | str):
            return value
        if isinstance(value, int | float):
            return float(value)
        self.fail(path, f"{value!r} must be a string, number or boolean")
        return None

    def _operand(self, body: dict[str, Any], path: str) -> Scalar | tuple[Scalar, ...] | None:
        """The value an operator compares with: value, values (for "in") or time."""
        op = body.get("op")
        if op not in OPERATORS:
            self.fail(f"{path}.op", f"must be one of {', '.join(sorted(OPERATORS))}")
            return None
        if op == "exists":
            return None
        if op == "in":
            values = body.get("values")
            if not isinstance(values, list) or not values:
                self.fail(f"{path}.values", 'is required for "in": a non-empty list')
                return None
            parsed = [self._scalar(v, f"{path}.values[{i}]") for i, v in enumerate(values)]
            return tuple(v for v in parsed if v is not None)
        if "time" in body:
            try:
                return TimeValue(parse_time(body["time"]))
            except ValueError as error:
                self.fail(f"{path}.time", str(error))
                return None
        if "value" not in body:
            self.fail(f"{path}.value", f'is required for "{op}"')
            return None
        value = self._scalar(body["value"], f"{path}.value")
        if op in ("<", "<=", ">", ">=") and isinstance(value, bool | str):
            self.fail(f"{path}.value", f'"{op}" compares numbers or times (use time: ...)')
        if op in ("starts_with",) and not isinstance(value, str):
            self.fail(f"{path}.value", f'"{op}" needs a string')
        return value

    def _trait(self, body: Any, path: str) -> Node | None:
        body = self._fields(body, path, {"key", "op", "value", "values", "time"})
        key = body.get("key")
        if not isinstance(key, str) or not key:
            self.fail(f"{path}.key", "is required: the trait's name")
        operand = self._operand(body, path)
        return Trait(str(key), str(body.get("op")), operand)

    def _filters(self, body: Any, path: str) -> tuple[Filter, ...]:
        if body is None:
            return ()
        if not isinstance(body, list):
            self.fail(path, "must be a list of {property, op, value}")
            return ()
        out = []
        for i, item in enumerate(body):
            here = f"{path}[{i}]"
            item = self._fields(item, here, {"property", "op", "value", "values", "time"})
            prop = item.get("property")
            if not isinstance(prop, str) or not prop:
                self.fail(f"{here}.property", "is required")
                continue
            out.append(Filter(prop, str(item.get("op")), self._operand(item, here)))
        return tuple(sorted(out, key=Filter.key))

    def _duration(self, body: dict[str, Any], field: str, path: str) -> int | None:
        if field not in body or body[field] is None:
            return None
        try:
            return parse_duration(body[field])
        except ValueError as error:
            self.fail(f"{path}.{field}", str(error))
            return None

    def _name(self, body: dict[str, Any], field: str, path: str) -> str:
        name = body.get(field)
        if not isinstance(name, str) or not name.strip():
            self.fail(f"{path}.{field}", "is required: an event name")
            return ""
        return name

    def _geo(self, body: Any, path: str) -> Node | None:
        body = self._fields(body, path, {"within_km", "of", "countries", "cities"})
        center = None
        radius = 0.0
        if "of" in body or "within_km" in body:
            of = body.get("of")
            if (
                not isinstance(of, list)
                or len(of) != 2
                or not all(isinstance(x, int | float) for x in of)
                or not (-90 <= of[0] <= 90 and -180 <= of[1] <= 180)
            ):
                self.fail(f"{path}.of", "must be [latitude, longitude] in degrees")
            else:
                center = (float(of[0]), float(of[1]))
            radius_raw = body.get("within_km")
            if not isinstance(radius_raw, int | float) or radius_raw <= 0:
                self.fail(f"{path}.within_km", "must be a positive number of kilometres")
            else:
                radius = float(radius_raw)
        countries = body.get("countries", [])
        cities = body.get("cities", [])
        if not isinstance(countries, list) or not all(
            isinstance(c, str) and len(c) == 2 for c in countries
        ):
            self.fail(f"{path}.countries", "must be a list of ISO 3166-1 alpha-2 codes")
            countries = []
        if not isinstance(cities, list) or not all(isinstance(c, str) and c for c in cities):
            self.fail(f"{path}.cities", "must be a list of city names")
            cities = []
        if center is None and not countries and not cities and not self.problems:
            self.fail(path, "needs within_km and of, or countries, or cities")
        return Geo(
            center,
            radius,
            frozenset(c.upper() for c in countries),
            frozenset(c.casefold() for c in cities),
        )

    def _names(self, body: Any, path: str, known: frozenset[str]) -> frozenset[str]:
        items = body if isinstance(body, list) else None
        if not items:
            self.fail(path, f"must be a non-empty list of: {', '.join(sorted(known))}")
            return frozenset()
        for i, item in enumerate(items):
            if item not in known:
                self.fail(f"{path}[{i}]", f"unknown {item!r}; one of {', '.join(sorted(known))}")
        return frozenset(str(i) for i in items)

    def _lifecycle(self, body: Any, path: str) -> Node:
        return Lifecycle(self._names(body, path, LIFECYCLE_STATES))

    def _rfm(self, body: Any, path: str) -> Node:
        return Rfm(self._names(body, path, RFM_GROUPS))

    def _events(self, body: Any, path: str) -> Node:
        body = self._fields(
            body, path, {"name", "where", "window", "aggregate", "property", "op", "value"}
        )
        aggregate = body.get("aggregate", "count")
        if aggregate not in AGGREGATES:
            self.fail(f"{path}.aggregate", f"must be one of {', '.join(sorted(AGGREGATES))}")
        prop = body.get("property", "")
        if aggregate != "count" and (not isinstance(prop, str) or not prop):
            self.fail(f"{path}.property", f"is required to {aggregate} a numeric property")
        op = body.get("op", ">=")
        if op not in COMPARISONS:
            self.fail(f"{path}.op", f"must be one of {', '.join(sorted(COMPARISONS))}")
        value = body.get("value", 1)
        if not isinstance(value, int | float) or isinstance(value, bool):
            self.fail(f"{path}.value", "must be a number")
            value = 0
        return Events(
            name=self._name(body, "name", path),
            where=self._filters(body.get("where"), f"{path}.where"),
            window_us=self._duration(body, "window", path),
            aggregate=str(aggregate),
            property=str(prop) if aggregate != "count" else "",
            op=str(op),
            value=float(value),
        )

    def _recency(self, body: Any, path: str) -> Node:
        body = self._fields(body, path, {"name", "where", "more_than", "less_than"})
        more = self._duration(body, "more_than", path)
        less = self._duration(body, "less_than", path)
        if (more is None) == (less is None):
            self.fail(path, "needs exactly one of more_than or less_than")
        return Recency(
            self._name(body, "name", path),
            self._filters(body.get("where"), f"{path}.where"),
            more,
            less,
        )

    def _first_seen(self, body: Any, path: str) -> Node:
        body = self._fields(body, path, {"before", "after", "more_than", "less_than"})
        before = after = None
        for field in ("before", "after"):
            if field in body:
                try:
                    value = parse_time(body[field])
                except ValueError as error:
                    self.fail(f"{path}.{field}", str(error))
                    continue
                if field == "before":
                    before = value
                else:
                    after = value
        more = self._duration(body, "more_than", path)
        less = self._duration(body, "less_than", path)
        if before is None and after is None and more is None and less is None:
            self.fail(path, "needs before, after, more_than or less_than")
        return FirstSeen(before, after, more, less)

    def _inaction(self, body: Any, path: str) -> Node:
        body = self._fields(body, path, {"did", "where", "not_did", "within"})
        within = self._duration(body, "within", path)
        if within is None:
            self.fail(f"{path}.within", "is required: a duration like 24h")
        return Inaction(
            self._name(body, "did", path),
            self._filters(body.get("where"), f"{path}.where"),
            self._name(body, "not_did", path),
            within or 0,
        )

    def _segment(self, body: Any, path: str) -> Node:
        if not isinstance(body, str) or not SEGMENT_ID.fullmatch(body):
            self.fail(path, "must be a segment id (lowercase letters, digits and -)")
            return SegmentRef("")
        self.segments.add(body)
        return SegmentRef(body)


@dataclass(frozen=True)
class Definition:
    root: Node
    # Segments this one refers to.
    references: frozenset[str]


def parse(data: Any, path: str = "condition") -> Definition:
    """A Definition, or DefinitionError naming every bad node."""
    parser = _Parser()
    root = parser.node(data, path)
    if parser.nodes > MAX_NODES:
        parser.fail(path, f"at most {MAX_NODES} conditions per segment")
    if parser.problems or root is None:
        raise DefinitionError(parser.problems or [(path, "is required")])
    return Definition(root, frozenset(parser.segments))


def find_cycle(segment_id: str, references: dict[str, frozenset[str]]) -> list[str] | None:
    """A reference cycle through `segment_id` in the graph {segment: segments it refers to}."""
    stack: list[tuple[str, list[str]]] = [(segment_id, [segment_id])]
    seen: set[str] = set()
    while stack:
        current, path = stack.pop()
        for nxt in sorted(references.get(current, frozenset())):
            if nxt == segment_id:
                return [*path, nxt]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None
