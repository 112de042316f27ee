"""Segment conditions between protobuf and the readable dict form the log stores.

Wire code shared by the projector (requests in, stored definitions out) and its clients (the
CLI and the console turn files and forms into requests, and show what the service returns).
"""

from __future__ import annotations

from datetime import UTC
from enum import StrEnum
from typing import Any

from cohortflow.segments.v1 import segments_pb2
from cohortflow.types.v1 import types_pb2
from google.protobuf import duration_pb2, timestamp_pb2

from services.common.segments.definition import (
    format_duration,
    parse_duration,
    parse_time,
)
from services.common.vocabulary_wire import (
    LIFECYCLE_STATE_OF_PB,
    LIFECYCLE_STATE_PB,
    RFM_GROUP_OF_PB,
    RFM_GROUP_PB,
)


class BuildStatus(StrEnum):
    """`BuildProgress.status`: where the build of a segment version from history stands."""

    WAITING = "waiting"  # for the projector to reach the definition
    RUNNING = "running"
    STORED = "stored"  # built; the projector switches at the next log position
    LIVE = "live"  # the version is (or was) the segment's live one
    FAILED = "failed"  # see BuildProgress.error; a failed build is not retried
    ARCHIVED = "archived"  # the segment was archived before this version went live


# The statuses after which a build does not change any more.
FINAL_BUILD_STATUSES = frozenset({BuildStatus.LIVE, BuildStatus.FAILED, BuildStatus.ARCHIVED})


_AGGREGATES = {
    segments_pb2.EventCondition.AGGREGATE_COUNT: "count",
    segments_pb2.EventCondition.AGGREGATE_SUM: "sum",
    segments_pb2.EventCondition.AGGREGATE_MIN: "min",
    segments_pb2.EventCondition.AGGREGATE_MAX: "max",
    segments_pb2.EventCondition.AGGREGATE_AVG: "avg",
}
_AGGREGATE_ENUMS = {v: k for k, v in _AGGREGATES.items()}


def _seconds(d: duration_pb2.Duration) -> str | None:
    """The readable form ("30d", "90s") that definition.parse_duration reads back."""
    us = d.seconds * 1_000_000 + d.nanos // 1_000
    return format_duration(us) if us > 0 else None


def _iso(ts: timestamp_pb2.Timestamp) -> str:
    return ts.ToDatetime(UTC).isoformat().replace("+00:00", "Z")


def _value(v: types_pb2.Value) -> tuple[str, Any] | None:
    kind = v.WhichOneof("kind")
    if kind == "timestamp_value":
        return "time", _iso(v.timestamp_value)
    if kind in ("string_value", "number_value", "bool_value"):
        return "value", getattr(v, kind)
    return None


def _operand(message: Any, out: dict[str, Any]) -> None:
    out["op"] = message.op
    if message.values:
        out["values"] = [_value(v)[1] for v in message.values if _value(v) is not None]  # type: ignore[index]
    if message.HasField("value"):
        pair = _value(message.value)
        if pair is not None:
            out[pair[0]] = pair[1]


def _filters(items: Any) -> list[dict[str, Any]]:
    out = []
    for f in items:
        item: dict[str, Any] = {"property": f.property}
        _operand(f, item)
        out.append(item)
    return out


def condition_to_dict(c: segments_pb2.Condition) -> dict[str, Any]:
    """The dict form of a condition (validated afterwards by definition.parse)."""
    kind = c.WhichOneof("kind")
    if kind is None:
        return {}
    body = getattr(c, kind)
    if kind in ("all", "any", "none"):
        return {kind: [condition_to_dict(x) for x in body.conditions]}
    if kind == "trait":
        out: dict[str, Any] = {"key": body.key}
        _operand(body, out)
        return {"trait": out}
    if kind == "geo":
        geo: dict[str, Any] = {}
        if body.HasField("center") or body.radius_km:
            geo["within_km"] = body.radius_km
            geo["of"] = [body.center.latitude, body.center.longitude]
        if body.countries:
            geo["countries"] = list(body.countries)
        if body.cities:
            geo["cities"] = list(body.cities)
        return {"geo": geo}
    if kind == "lifecycle":
        return {"lifecycle": [LIFECYCLE_STATE_OF_PB.get(s, f"state {s}") for s in body.states]}
    if kind == "rfm":
        return {"rfm": [RFM_GROUP_OF_PB.get(g, f"group {g}") for g in body.groups]}
    if kind == "events":
        events: dict[str, Any] = {
            "name": body.name,
            "aggregate": _AGGREGATES.get(body.aggregate, "count"),
            "op": body.op or ">=",
            "value": int(body.value) if body.value.is_integer() else body.value,
        }
        if body.where:
            events["where"] = _filters(body.where)
        if body.HasField("window"):
            events["window"] = _seconds(body.window) or 0
        if body.property:
            events["property"] = body.property
        return {"events": events}
    if kind == "recency":
        recency: dict[str, Any] = {"name": body.name}
        if body.where:
            recency["where"] = _filters(body.where)
        if body.HasField("more_than"):
            recency["more_than"] = _seconds(body.more_than) or 0
        if body.HasField("less_than"):
            recency["less_than"] = _seconds(body.less_than) or 0
        return {"recency": recency}
    if kind == "first_seen":
        first: dict[str, Any] = {}
        if body.HasField("before_time"):
            first["before"] = _iso(body.before_time)
        if body.HasField("after_time"):
            first["after"] = _iso(body.after_time)
        if body.HasField("more_than"):
            first["more_than"] = _seconds(body.more_than) or 0
        if body.HasField("less_than"):
            first["less_than"] = _seconds(body.less_than) or 0
        return {"first_seen": first}
    if kind == "inaction":
        inaction: dict[str, Any] = {"did": body.did, "not_did": body.not_did}
        if body.where:
            inaction["where"] = _filters(body.where)
        if body.HasField("within"):
            inaction["within"] = _seconds(body.within) or 0
        return {"inaction": inaction}
    return {"segment": body.segment_id}


def _duration(value: Any) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromMicroseconds(parse_duration(value))
    return d


def _timestamp(value: str) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromMicroseconds(parse_time(value))
    return ts


def _value_pb(value: Any) -> types_pb2.Value:
    if isinstance(value, bool):
        return types_pb2.Value(bool_value=value)
    if isinstance(value, int | float):
        return types_pb2.Value(number_value=float(value))
    return types_pb2.Value(string_value=str(value))


def _operand_pb(data: dict[str, Any], message: Any) -> None:
    message.op = data.get("op", "")
    if "time" in data:
        message.value.timestamp_value.CopyFrom(_timestamp(data["time"]))
    elif "value" in data:
        message.value.CopyFrom(_value_pb(data["value"]))
    for v in data.get("values", []):
        message.values.append(_value_pb(v))


def _filters_pb(items: list[dict[str, Any]], target: Any) -> None:
    for item in items:
        f = target.add(property=item["property"])
        _operand_pb(item, f)


def condition_from_dict(data: dict[str, Any]) -> segments_pb2.Condition:
    """The protobuf form of a (valid) stored condition."""
    ((kind, body),) = data.items()
    c = segments_pb2.Condition()
    if kind in ("all", "any", "none"):
        getattr(c, kind).conditions.extend(condition_from_dict(x) for x in body)
    elif kind == "trait":
        c.trait.key = body["key"]
        _operand_pb(body, c.trait)
    elif kind == "geo":
        if "of" in body:
            c.geo.center.latitude, c.geo.center.longitude = body["of"]
            c.geo.radius_km = body["within_km"]
        c.geo.countries.extend(body.get("countries", []))
        c.geo.cities.extend(body.get("cities", []))
    elif kind == "lifecycle":
        c.lifecycle.states.extend(LIFECYCLE_STATE_PB[s] for s in body)
    elif kind == "rfm":
        c.rfm.groups.extend(RFM_GROUP_PB[g] for g in body)
    elif kind == "events":
        e = c.events
        e.name = body["name"]
        e.aggregate = _AGGREGATE_ENUMS[body.get("aggregate", "count")]
        e.op = body.get("op", ">=")
        e.value = float(body.get("value", 1))
        e.property = body.get("property", "")
        if body.get("window") is not None:
            e.window.CopyFrom(_duration(body["window"]))
        _filters_pb(body.get("where") or [], e.where)
    elif kind == "recency":
        c.recency.name = body["name"]
        for field in ("more_than", "less_than"):
            if body.get(field) is not None:
                getattr(c.recency, field).CopyFrom(_duration(body[field]))
        _filters_pb(body.get("where") or [], c.recency.where)
    elif kind == "first_seen":
        for field, target in (("before", "before_time"), ("after", "after_time")):
            if field in body:
                getattr(c.first_seen, target).CopyFrom(_timestamp(body[field]))
        for field in ("more_than", "less_than"):
            if body.get(field) is not None:
                getattr(c.first_seen, field).CopyFrom(_duration(body[field]))
    elif kind == "inaction":
        c.inaction.did = body["did"]
        c.inaction.not_did = body["not_did"]
        c.inaction.within.CopyFrom(_duration(body["within"]))
        _filters_pb(body.get("where") or [], c.inaction.where)
    else:
        c.segment.segment_id = body
    return c
