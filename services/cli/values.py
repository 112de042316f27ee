"""Typed property values and times from text: `--prop k=v`, CSV cells, JSON values.

Inference, the same everywhere text is read:
  `true` / `false`                          -> bool
  a decimal number (`3`, `-2.5`, `1e3`)     -> number
  an ISO-8601 date-time (`2024-05-01T10:00:00Z`) -> timestamp
  anything else                             -> string
`key:=JSON` (on the command line) or a `prop.key:TYPE` CSV column forces a kind.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

import orjson
from cohortflow.types.v1 import types_pb2
from google.protobuf import timestamp_pb2

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
KINDS = ("string", "number", "bool", "time", "json")
TIMESTAMP_KEY = "$time"


class BadValue(ValueError):
    """A value that cannot be read; the message says why."""


def parse_time(text: str) -> datetime:
    """An ISO-8601 date-time; without an offset it is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        msg = f"{text!r} is not an ISO-8601 date-time like 2024-05-01T10:00:00Z"
        raise BadValue(msg) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(moment)
    return ts


def infer(text: str) -> types_pb2.Value:
    """A value from text by the inference rules above."""
    if text in ("true", "false"):
        return types_pb2.Value(bool_value=text == "true")
    if _NUMBER.fullmatch(text):
        return number(float(text))
    if _DATETIME.match(text):
        try:
            return types_pb2.Value(timestamp_value=timestamp(parse_time(text)))
        except BadValue:
            pass
    return types_pb2.Value(string_value=text)


def number(value: float) -> types_pb2.Value:
    if not math.isfinite(value):
        msg = "numbers must be finite"
        raise BadValue(msg)
    return types_pb2.Value(number_value=value)


def of_kind(text: str, kind: str) -> types_pb2.Value:
    """A value of an explicit kind (string, number, bool, time, json)."""
    if kind == "string":
        return types_pb2.Value(string_value=text)
    if kind == "number":
        try:
            parsed = float(text)
        except ValueError:
            msg = f"{text!r} is not a number"
            raise BadValue(msg) from None
        return number(parsed)
    if kind == "bool":
        if text.lower() not in ("true", "false"):
            msg = f"{text!r} is not true or false"
            raise BadValue(msg)
        return types_pb2.Value(bool_value=text.lower() == "true")
    if kind == "time":
        return types_pb2.Value(timestamp_value=timestamp(parse_time(text)))
    if kind == "json":
        try:
            return from_json(orjson.loads(text))
        except orjson.JSONDecodeError:
            msg = f"{text!r} is not valid JSON"
            raise BadValue(msg) from None
    msg = f"unknown kind {kind!r}; use one of {', '.join(KINDS)}"
    raise BadValue(msg)


def from_json(value: Any, *, in_list: bool = False) -> types_pb2.Value:
    """A value from decoded JSON: string, number, bool, {"$time": ISO} or a list of those."""
    if isinstance(value, bool):
        return types_pb2.Value(bool_value=value)
    if isinstance(value, int | float):
        return number(float(value))
    if isinstance(value, str):
        return types_pb2.Value(string_value=value)
    if isinstance(value, dict) and set(value) == {TIMESTAMP_KEY}:
        if not isinstance(value[TIMESTAMP_KEY], str):
            msg = f'"{TIMESTAMP_KEY}" must hold an ISO-8601 string'
            raise BadValue(msg)
        return types_pb2.Value(timestamp_value=timestamp(parse_time(value[TIMESTAMP_KEY])))
    if isinstance(value, list) and not in_list:
        items = [from_json(item, in_list=True) for item in value]
        return types_pb2.Value(list_value=types_pb2.ValueList(values=items))
    if isinstance(value, list):
        msg = "lists cannot contain lists"
        raise BadValue(msg)
    if value is None:
        msg = "null is not a value; leave the property out instead"
        raise BadValue(msg)
    msg = f'objects are not values (only {{"{TIMESTAMP_KEY}": "<ISO-8601>"}} for a timestamp)'
    raise BadValue(msg)


def assignment(text: str) -> tuple[str, types_pb2.Value]:
    """`key=value` (inferred) or `key:=JSON` from the command line."""
    key, sep, raw = text.partition("=")
    if not sep or not key or key == ":":
        msg = f"{text!r} is not key=value (or key:=JSON)"
        raise BadValue(msg)
    if key.endswith(":"):
        return key[:-1], of_kind(raw, "json")
    return key, infer(raw)
