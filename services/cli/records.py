"""Import files, one event per line, read into Event protos (JSONL here, CSV in csv_rows).

Every problem names its line and field, so a bad line is reported, not fatal: each line
becomes a whole event or a problem, never part of one. The physical lines come checked
from `lines` (UTF-8, NUL bytes, length). The columns (CSV) and keys (JSONL) are
documented in README.md, section CLI.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from cohortflow.ingest.v1 import ingest_pb2
from cohortflow.types.v1 import types_pb2

from services.cli.lines import FileProblem, Line
from services.cli.values import BadValue, from_json, parse_time, timestamp

__all__ = ["FileProblem", "LineProblem", "Record", "build_event", "json_objects", "read_jsonl"]

IDENTITY = ("event_id", "user_id", "anonymous_id", "name")
CONTEXT = ("platform", "os", "app_version", "locale", "timezone", "country", "city")
COORDINATES = ("latitude", "longitude")
TOP_LEVEL = (*IDENTITY, "event_time", "properties", "context")
CSV_COLUMNS = (*IDENTITY, "event_time", "properties", *CONTEXT, *COORDINATES)
PROP_PREFIX = "prop."
# Characters that would break a report line or drive the terminal: shown escaped.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str) -> str:
    """`text` with control characters (NUL, CR, LF, ESC...) escaped, so it stays one line."""
    return _UNPRINTABLE.sub(lambda m: ascii(m.group())[1:-1], text)


@dataclass(frozen=True)
class LineProblem:
    """Why one line cannot become an event."""

    line: int
    field: str
    reason: str

    def at(self, source: str) -> str:
        """`source:line: field: reason`, one printable line (no field: the whole line)."""
        where = f"{source}:{self.line}: {self.field}" if self.field else f"{source}:{self.line}"
        return printable(f"{where}: {self.reason}")


@dataclass(frozen=True)
class Record:
    """What one line becomes: an event for TrackBatch, and Identify calls sent once the
    event is stored (or on their own, without an event). A `link` (ids joined by an event
    that carries both) is sent once per import, however many lines imply it."""

    line: int
    event: ingest_pb2.Event | None
    identifies: tuple[ingest_pb2.IdentifyRequest, ...] = ()
    link: ingest_pb2.IdentifyRequest | None = None


class BadField(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def derived_event_id(text: str) -> str:
    """An id from a line's text, so re-importing a file without event ids stays idempotent."""
    return "imp-" + hashlib.sha256(text.strip().encode()).hexdigest()[:32]


def _text(field: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and field in IDENTITY[:3]:
        return str(value)
    raise BadField(field, f"must be a string, got {type(value).__name__}")


def _coordinate(field: str, value: Any) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise BadField(field, f"{value!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadField(field, "must be a number of degrees")
    return float(value)


def _context(event: ingest_pb2.Event, context: Any) -> None:
    if not isinstance(context, dict):
        raise BadField("context", "must be an object")
    for name, value in context.items():
        if name not in CONTEXT + COORDINATES:
            expected = ", ".join(CONTEXT + COORDINATES)
            raise BadField(f"context.{name}", f"unknown; expected one of {expected}")
        if value not in (None, "") and name not in COORDINATES:
            setattr(event.context, name, _text(f"context.{name}", value))
    present = [name for name in COORDINATES if context.get(name) not in (None, "")]
    if len(present) == 1:
        raise BadField(f"context.{present[0]}", "latitude and longitude go together")
    if present:
        event.context.location.latitude = _coordinate("context.latitude", context["latitude"])
        event.context.location.longitude = _coordinate("context.longitude", context["longitude"])


def build_event(fields: dict[str, Any], properties: dict[str, types_pb2.Value]) -> ingest_pb2.Event:
    """An Event from its fields (ids, name, event_time, context) and typed properties."""
    event = ingest_pb2.Event(properties=properties)
    for name in IDENTITY:
        if fields.get(name) not in (None, ""):
            setattr(event, name, _text(name, fields[name]))
    if fields.get("event_time") not in (None, ""):
        try:
            moment = parse_time(_text("event_time", fields["event_time"]))
        except BadValue as error:
            raise BadField("event_time", str(error)) from None
        event.event_time.CopyFrom(timestamp(moment))
    if fields.get("context") is not None:
        _context(event, fields["context"])
    _refuse_nul(event)
    return event


def _nul_in(value: types_pb2.Value) -> bool:
    if value.HasField("list_value"):
        return any(_nul_in(item) for item in value.list_value.values)
    return "\x00" in value.string_value


def _refuse_nul(event: ingest_pb2.Event) -> None:
    """No text of the event holds a NUL character (a JSON "\\u0000"): BadField naming it."""
    reason = "holds a NUL character (\\u0000)"
    for name in IDENTITY:
        if "\x00" in getattr(event, name):
            raise BadField(name, reason)
    for name in CONTEXT:
        if "\x00" in getattr(event.context, name):
            raise BadField(f"context.{name}", reason)
    for key, value in event.properties.items():
        if "\x00" in key:
            raise BadField(f'properties["{key}"]', "the key " + reason)
        if _nul_in(value):
            raise BadField(f'properties["{key}"]', reason)


def json_properties(value: Any) -> dict[str, types_pb2.Value]:
    """Properties from a JSON object (or its text, as in a CSV `properties` cell)."""
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise BadField("properties", "is not a valid JSON object") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadField("properties", "must be a JSON object")
    out = {}
    for key, item in value.items():
        try:
            out[key] = from_json(item)
        except BadValue as error:
            raise BadField(f'properties["{key}"]', str(error)) from None
    return out


def problem_of(line: int, error: ValueError) -> LineProblem:
    if isinstance(error, BadField):
        return LineProblem(line, error.field, error.reason)
    return LineProblem(line, "", str(error))


def json_objects(lines: Iterable[Line]) -> Iterator[tuple[Line, dict[str, Any]] | LineProblem]:
    """The JSON object of each line, or why the line holds none; blank lines (spaces and
    tabs only) are skipped."""
    for line in lines:
        number, text = line.number, line.text
        if line.problem:
            yield LineProblem(number, "", line.problem)
            continue
        if not text.strip(" \t\r"):
            continue
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError as error:
            yield LineProblem(number, "", f"not valid JSON ({error.msg} at column {error.colno})")
            continue
        if not isinstance(obj, dict):
            yield LineProblem(number, "", "must be a JSON object, one event per line")
            continue
        yield line, obj


def read_jsonl(lines: Iterable[Line]) -> Iterator[Record | LineProblem]:
    """One event per line in cohortflow's own JSONL shape (README, CLI)."""
    for item in json_objects(lines):
        if isinstance(item, LineProblem):
            yield item
            continue
        line, obj = item
        try:
            unknown = sorted(set(obj) - set(TOP_LEVEL))
            if unknown:
                raise BadField(unknown[0], f"unknown key; expected one of {', '.join(TOP_LEVEL)}")
            event = build_event(obj, json_properties(obj.get("properties")))
        except ValueError as error:
            yield problem_of(line.number, error)
            continue
        if not event.event_id:
            event.event_id = derived_event_id(line.text)
        yield Record(line.number, event)
