"""What makes one log event poison for the projector, and which failures are only transient.

Three kinds of failure can be tied to one event:
- it holds a value PostgreSQL can never store: a NUL character in any string
  (text and jsonb refuse it). Found before the fold by `unstorable`, from the
  event alone, so every replay finds the same ones whatever its batch boundaries;
- committed alone, its rows are refused with a data error (SQLSTATE class 22, such
  as a number out of range, or 54, such as an index row too large; or the client
  refusing to encode a value), or cannot even be built (`UnencodableRows`, e.g. an
  integer beyond 64 bits for jsonb): `refused`. Found by folding the failed batch
  again in smaller commits (isolation.py);
- decoding or folding it raises.

Everything else never quarantines anything: a lost connection, a database that is
down, refuses connections or is shutting down, a serialization failure, a lock
timeout, out of memory (`transient`), and any other database error (a schema or
programming error is not the fault of an event) keep the projector retrying from
its last commit.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import eventsourcing.persistence as es
import orjson
import psycopg
from eventsourcing.persistence import Notification

from services.eventlog.events import ClockTicked, EventTracked, UserIdentified, datetime_to_us
from services.eventlog.segments import Segment
from services.projector.adapters.quarantine import (
    DETAIL_CHARS,
    UNSTORABLE_VALUE,
    Quarantined,
    safe_text,
)

_DATA_CLASSES = ("22", "54")
_TRANSIENT = (
    es.OperationalError,
    es.InterfaceError,
    ConnectionError,
    TimeoutError,
    MemoryError,
)
# orjson (and any JSON encoder) writes a NUL inside a string as this escape.
_NUL_ESCAPE = b"\\u0000"
# Event times a protobuf Timestamp can carry (years 1 to 9999), in microseconds.
_MIN_US, _MAX_US = -62_135_596_800_000_000, 253_402_300_799_999_999


class UnencodableRows(Exception):
    """The rows of a batch could not be built from what it folded (its cause says why)."""


# What building rows raises for a value no encoder takes (orjson: integers beyond 64 bits;
# protobuf: times out of range). Anything else there is a bug, and quarantines nothing.
UNENCODABLE_VALUE_ERRORS = (orjson.JSONEncodeError, ValueError, OverflowError, UnicodeError)


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _database_error(error: BaseException) -> psycopg.Error | None:
    return next((e for e in _chain(error) if isinstance(e, psycopg.Error)), None)


def refused(error: BaseException) -> bool:
    """A commit failure caused by the values written: possibly tied to one event."""
    if any(isinstance(e, UnencodableRows) for e in _chain(error)):
        return True
    found = _database_error(error)
    if found is not None:
        if found.sqlstate:
            return found.sqlstate[:2] in _DATA_CLASSES
        return isinstance(found, psycopg.DataError)  # refused by the client, before sending
    return any(isinstance(e, OverflowError | UnicodeEncodeError) for e in _chain(error))


def transient(error: BaseException) -> bool:
    """A failure of the database or the connection to it, never of an event."""
    found = _database_error(error)
    if found is not None:
        if found.sqlstate and found.sqlstate[:2] in _DATA_CLASSES:
            return False
        return isinstance(found, psycopg.OperationalError | psycopg.InterfaceError)
    return any(isinstance(e, _TRANSIENT) for e in _chain(error))


def condition(error: BaseException) -> str:
    """A short, stable name of what went wrong (no values of the event in it)."""
    if isinstance(error, UnencodableRows) and error.__cause__ is not None:
        return f"{type(error.__cause__).__name__} while building its rows"
    found = _database_error(error)
    if found is not None and found.sqlstate:
        name = type(found).__name__
        return f"{name} (SQLSTATE {found.sqlstate})"
    return type(found or error).__name__


def _nul_path(value: Any, path: str) -> str | None:
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            name = safe_text(orjson.dumps(key).decode() if isinstance(key, str) else key, 60)
            if isinstance(key, str) and "\x00" in key:
                return f"the key {name} of {path}"
            found = _nul_path(item, f"{path}[{name}]")
            if found:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _nul_path(item, f"{path}[{index}]")
            if found:
                return found
    return None


def unstorable(notification: Notification, event: object) -> str | None:
    """Where `event` holds a NUL character, if anywhere (e.g. 'properties["note"]')."""
    if _NUL_ESCAPE not in notification.state:
        return None  # the fast path: one scan of the stored bytes
    fields = vars(event) if hasattr(event, "__dict__") else {}
    for name, value in fields.items():
        found = _nul_path(value, name)
        if found:
            return found
    return None


def _kind(event: object | None) -> str:
    if isinstance(event, EventTracked):
        return "track"
    if isinstance(event, UserIdentified):
        return "identify"
    if isinstance(event, ClockTicked):
        return "tick"
    if isinstance(event, Segment.Event):
        return "segment"
    return "unknown"


def _event_time(event: object) -> int | None:
    if isinstance(event, ClockTicked):
        value: object = event.tick_time_us
    elif isinstance(event, Segment.Event):
        value = datetime_to_us(event.timestamp)
    else:
        value = getattr(event, "event_time_us", None)
    if isinstance(value, int) and not isinstance(value, bool) and _MIN_US <= value <= _MAX_US:
        return value
    return None


def _fields(notification: Notification, event: object | None) -> dict[str, Any]:
    """The event's fields, or what can be read of an event that does not decode."""
    if event is not None:
        return vars(event) if hasattr(event, "__dict__") else {}
    try:
        data = orjson.loads(notification.state)
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def describe(
    notification: Notification, event: object | None, reason: str, detail: str
) -> Quarantined:
    """The quarantine record of `notification` (decoded as `event`, None if it did not)."""
    found = _fields(notification, event)

    def text(name: str) -> str:
        value = found.get(name, "")
        return safe_text(value) if isinstance(value, str) else ""

    kind = _kind(event)
    return Quarantined(
        position=notification.id,
        app_id=text("app_id") if kind != "tick" else "",
        kind=kind,
        reason=reason,
        detail=safe_text(detail, DETAIL_CHARS),
        event_id=text("event_id"),
        user_id=text("user_id"),
        anonymous_id=text("anonymous_id"),
        event_name=text("name") if kind == "track" else "",
        segment_id=text("segment_id"),
        event_time_us=_event_time(event) if event is not None else None,
        quarantined_us=time.time_ns() // 1000,
    )


def screen(notification: Notification, event: object) -> Quarantined | None:
    """The record of `event` if it can never be stored, else None."""
    path = unstorable(notification, event)
    if path is None:
        return None
    return describe(notification, event, UNSTORABLE_VALUE, f"NUL character in {path}")
