"""Reading fields of a decoded source object, each problem named by its source JSON path.

A mapping reads every field through these helpers, so a wrong type, a NUL character or a
time that is no time becomes a `FieldError` naming where it is in the source object
(`properties.price`, `context.location.latitude`, `properties["Plan Type"]`), never a
half-built message.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from cohortflow.ingest.v1 import ingest_pb2
from google.protobuf import timestamp_pb2

_PLAIN_KEY = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
NUL_REASON = "holds a NUL character (\\u0000)"
# Epoch numbers at or above this are milliseconds (1e11 s is the year 5138).
_MS_FROM = 1e11
_MAX_SECONDS = 253_402_300_800  # 10000-01-01, past the last Timestamp


class FieldError(ValueError):
    """A field of the source object that cannot become part of a message."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class Converted:
    """What one source object becomes.

    `event` goes to Track / TrackBatch; `identifies` (the source's own identify, alias or
    group calls) and `link` (an anonymous id joined to a user id, implied by an event that
    carries both) go to Identify, after `event` is stored, or on their own without one.
    """

    event: ingest_pb2.Event | None = None
    identifies: tuple[ingest_pb2.IdentifyRequest, ...] = ()
    link: ingest_pb2.IdentifyRequest | None = None


def child(path: str, key: str) -> str:
    """The path of `key` inside `path`: `a.b`, or `a["odd key"]` when it is no plain name."""
    if _PLAIN_KEY.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{orjson.dumps(key).decode()}]"


def kind_of(value: Any) -> str:
    """The JSON name of a decoded value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def obj(value: Any, path: str) -> dict[str, Any]:
    """An object, or {} for an absent or null one."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FieldError(path, f"must be an object, got {kind_of(value)}")
    return value


def text(value: Any, path: str, *, numbers: bool = False) -> str:
    """A string ("" for absent or null); with `numbers`, a number (an id, a version) is
    taken as its text."""
    if value is None:
        return ""
    if numbers and isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise FieldError(path, "must be a string or a finite number")
        return str(value)
    if not isinstance(value, str):
        raise FieldError(path, f"must be a string, got {kind_of(value)}")
    if "\x00" in value:
        raise FieldError(path, NUL_REASON)
    return value


def joined(*parts: str) -> str:
    """The non-empty parts, space-separated (an OS name and its version)."""
    return " ".join(part for part in parts if part)


def number(value: Any, path: str) -> float | None:
    """A finite number (a numeric string too, as some exports write them); None if absent."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise FieldError(path, f"{value[:40]!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FieldError(path, f"must be a number, got {kind_of(value)}")
    if not math.isfinite(value):
        raise FieldError(path, "must be a finite number")
    return float(value)


def timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(moment)
    return out


def iso_time(value: Any, path: str) -> timestamp_pb2.Timestamp:
    """An ISO-8601 date-time (`2026-01-02T03:04:05.678Z`, `2026-01-02 03:04:05.678000`);
    without an offset it is UTC."""
    raw = text(value, path)
    try:
        moment = datetime.fromisoformat(raw.strip())
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return timestamp(moment.astimezone(UTC))
    except (ValueError, OverflowError):
        shown = raw[:40]
        raise FieldError(path, f"{shown!r} is not an ISO-8601 date-time") from None


def epoch_time(value: Any, path: str) -> timestamp_pb2.Timestamp:
    """Seconds since 1970, or milliseconds when the number is that large."""
    seconds = number(value, path)
    if seconds is None:
        raise FieldError(path, "must be a number of seconds or milliseconds since 1970")
    if seconds >= _MS_FROM:
        seconds /= 1000
    if not 0 <= seconds < _MAX_SECONDS:
        raise FieldError(path, "is not a time in seconds or milliseconds since 1970")
    return timestamp(datetime.fromtimestamp(seconds, UTC))
