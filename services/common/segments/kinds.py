"""One reader per condition kind of the language, and `KINDS`, the table that names them.

Each reader takes the kind's body (the value under its key), the path of that body and
the nesting depth, and returns the node (or None, with its problems reported).
"""

from __future__ import annotations

from typing import Any

from services.common.segments.nodes import (
    AGGREGATES,
    COMPARISONS,
    LIFECYCLE_STATES,
    RFM_GROUPS,
    SEGMENT_ID,
    AllOf,
    AnyOf,
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
from services.common.segments.reader import Kind, Reader
from services.common.segments.timing import parse_time


def _all(r: Reader, body: Any, path: str, depth: int) -> Node:
    return AllOf(r.children(body, path, depth))


def _any(r: Reader, body: Any, path: str, depth: int) -> Node:
    return AnyOf(r.children(body, path, depth))


def _none(r: Reader, body: Any, path: str, depth: int) -> Node:
    return NoneOf(r.children(body, path, depth))


def _trait(r: Reader, body: Any, path: str, _depth: int) -> Node:
    body = r.fields(body, path, {"key", "op", "value", "values", "time"})
    key = body.get("key")
    if not isinstance(key, str) or not key:
        r.fail(f"{path}.key", "is required: the trait's name")
    operand = r.operand(body, path)
    return Trait(r.text(key), r.text(body.get("op")), operand)


def _center(r: Reader, body: dict[str, Any], path: str) -> tuple[tuple[float, float] | None, float]:
    center, radius = None, 0.0
    of = body.get("of")
    if (
        not isinstance(of, list)
        or len(of) != 2
        or not all(isinstance(x, int | float) for x in of)
        or not (-90 <= of[0] <= 90 and -180 <= of[1] <= 180)
    ):
        r.fail(f"{path}.of", "must be [latitude, longitude] in degrees")
    else:
        center = (float(of[0]), float(of[1]))
    raw = body.get("within_km")
    message = "must be a positive number of kilometres"
    km = r.number(raw, f"{path}.within_km", message)
    if km is not None and km <= 0:
        r.fail(f"{path}.within_km", message)
    elif km is not None:
        radius = km
    return center, radius


def _geo(r: Reader, body: Any, path: str, _depth: int) -> Node:
    body = r.fields(body, path, {"within_km", "of", "countries", "cities"})
    center, radius = None, 0.0
    if "of" in body or "within_km" in body:
        center, radius = _center(r, body, path)
    countries = body.get("countries", [])
    cities = body.get("cities", [])
    if not isinstance(countries, list) or not all(
        isinstance(c, str) and len(c) == 2 for c in countries
    ):
        r.fail(f"{path}.countries", "must be a list of ISO 3166-1 alpha-2 codes")
        countries = []
    if not isinstance(cities, list) or not all(isinstance(c, str) and c for c in cities):
        r.fail(f"{path}.cities", "must be a list of city names")
        cities = []
    if center is None and not countries and not cities and not r.problems:
        r.fail(path, "needs within_km and of, or countries, or cities")
    return Geo(
        center,
        radius,
        frozenset(c.upper() for c in countries),
        frozenset(c.casefold() for c in cities),
    )


def _lifecycle(r: Reader, body: Any, path: str, _depth: int) -> Node:
    return Lifecycle(r.names(body, path, LIFECYCLE_STATES))


def _rfm(r: Reader, body: Any, path: str, _depth: int) -> Node:
    return Rfm(r.names(body, path, RFM_GROUPS))


def _events(r: Reader, body: Any, path: str, _depth: int) -> Node:
    body = r.fields(body, path, {"name", "where", "window", "aggregate", "property", "op", "value"})
    aggregate = body.get("aggregate", "count")
    if not isinstance(aggregate, str) or aggregate not in AGGREGATES:
        r.fail(f"{path}.aggregate", f"must be one of {', '.join(sorted(AGGREGATES))}")
    prop = body.get("property", "")
    if not isinstance(prop, str):
        r.fail(f"{path}.property", "must be the name of a numeric property")
    elif aggregate != "count" and not prop:
        r.fail(f"{path}.property", f"is required to {r.text(aggregate)} a numeric property")
    op = body.get("op", ">=")
    if not isinstance(op, str) or op not in COMPARISONS:
        r.fail(f"{path}.op", f"must be one of {', '.join(sorted(COMPARISONS))}")
    value = r.number(body.get("value", 1), f"{path}.value")
    return Events(
        name=r.event_name(body, "name", path),
        where=r.filters(body.get("where"), f"{path}.where"),
        window_us=r.duration(body, "window", path),
        aggregate=r.text(aggregate),
        property=r.text(prop) if aggregate != "count" else "",
        op=r.text(op),
        value=value or 0.0,
    )


def _recency(r: Reader, body: Any, path: str, _depth: int) -> Node:
    body = r.fields(body, path, {"name", "where", "more_than", "less_than"})
    more = r.duration(body, "more_than", path)
    less = r.duration(body, "less_than", path)
    if (more is None) == (less is None):
        r.fail(path, "needs exactly one of more_than or less_than")
    return Recency(
        r.event_name(body, "name", path), r.filters(body.get("where"), f"{path}.where"), more, less
    )


def _first_seen(r: Reader, body: Any, path: str, _depth: int) -> Node:
    body = r.fields(body, path, {"before", "after", "more_than", "less_than"})
    times: dict[str, int] = {}
    for field in ("before", "after"):
        if field in body:
            try:
                times[field] = parse_time(body[field])
            except ValueError as error:
                r.fail(f"{path}.{field}", str(error))
    more = r.duration(body, "more_than", path)
    less = r.duration(body, "less_than", path)
    if not times and more is None and less is None:
        r.fail(path, "needs before, after, more_than or less_than")
    return FirstSeen(times.get("before"), times.get("after"), more, less)


def _inaction(r: Reader, body: Any, path: str, _depth: int) -> Node:
    body = r.fields(body, path, {"did", "where", "not_did", "within"})
    within = r.duration(body, "within", path)
    if within is None:
        r.fail(f"{path}.within", "is required: a duration like 24h")
    return Inaction(
        r.event_name(body, "did", path),
        r.filters(body.get("where"), f"{path}.where"),
        r.event_name(body, "not_did", path),
        within or 0,
    )


def _segment(r: Reader, body: Any, path: str, _depth: int) -> Node:
    if not isinstance(body, str) or not SEGMENT_ID.fullmatch(body):
        r.fail(path, "must be a segment id (lowercase letters, digits and -)")
        return SegmentRef("")
    r.segments.add(body)
    return SegmentRef(body)


# The language's condition kinds, in the order messages list them.
KINDS: dict[str, Kind] = {
    "all": _all,
    "any": _any,
    "none": _none,
    "trait": _trait,
    "geo": _geo,
    "lifecycle": _lifecycle,
    "rfm": _rfm,
    "events": _events,
    "recency": _recency,
    "first_seen": _first_seen,
    "inaction": _inaction,
    "segment": _segment,
}
