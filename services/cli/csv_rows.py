"""CSV import: a header row names the columns, each further row is one event.

Columns: the event's own fields and context fields by name (see `records.CSV_COLUMNS`),
`properties` as a JSON object, and `prop.<key>` per property, typed by inference or
by a suffix: `prop.<key>:string|number|bool|time|json`. Empty cells are left out.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from cohortflow.types.v1 import types_pb2

from services.cli.lines import MAX_LINE_BYTES, FileProblem, Line
from services.cli.records import (
    CONTEXT,
    COORDINATES,
    CSV_COLUMNS,
    PROP_PREFIX,
    LineProblem,
    Record,
    build_event,
    derived_event_id,
    json_properties,
    problem_of,
)
from services.cli.values import KINDS, BadValue, infer, of_kind


@dataclass(frozen=True)
class Column:
    name: str
    # the property key of a `prop.` column, else None
    prop: str | None = None
    kind: str | None = None


def columns(header: list[str]) -> list[Column]:
    """The header's columns; FileProblem naming the first column that is not understood."""
    out: list[Column] = []
    seen: set[str] = set()
    for cell in header:
        name = cell.strip()
        if name in seen:
            raise FileProblem(1, f"column {name!r} appears twice")
        seen.add(name)
        if name.startswith(PROP_PREFIX):
            key, _, kind = name[len(PROP_PREFIX) :].partition(":")
            if not key:
                raise FileProblem(1, f"column {name!r} names no property")
            if kind and kind not in KINDS:
                raise FileProblem(
                    1, f"column {name!r}: unknown type {kind!r}; use one of {', '.join(KINDS)}"
                )
            out.append(Column(name, key, kind or None))
        elif name in CSV_COLUMNS:
            out.append(Column(name))
        else:
            raise FileProblem(
                1,
                f"unknown column {name!r}; expected {', '.join(CSV_COLUMNS)}"
                f" or {PROP_PREFIX}<key>[:type]",
            )
    return out


def _event(cols: list[Column], row: list[str], line: int) -> Record | LineProblem:
    fields: dict[str, Any] = {"context": {}}
    properties: dict[str, types_pb2.Value] = {}
    try:
        for column, cell in zip(cols, row, strict=True):
            if cell == "":
                continue
            if column.prop is not None:
                try:
                    value = of_kind(cell, column.kind) if column.kind else infer(cell)
                except BadValue as error:
                    return LineProblem(line, f"{column.name}", str(error))
                properties[column.prop] = value
            elif column.name == "properties":
                properties = {**json_properties(cell), **properties}
            elif column.name in CONTEXT or column.name in COORDINATES:
                fields["context"][column.name] = cell
            else:
                fields[column.name] = cell
        event = build_event(fields, properties)
    except ValueError as error:
        problem = problem_of(line, error)
        # name the CSV column, not the event field it fills
        return LineProblem(line, problem.field.removeprefix("context."), problem.reason)
    if not event.event_id:
        event.event_id = derived_event_id("\x1f".join(row))
    return Record(line, event)


class _Text:
    """The text of each line for csv.reader (one string per line, so its line_num is the
    line number); an unreadable line reads as empty and is kept in `bad`."""

    def __init__(self, lines: Iterable[Line]) -> None:
        self._lines = iter(lines)
        self.bad: list[Line] = []

    def __iter__(self) -> _Text:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        if line.problem:
            self.bad.append(line)
            return "\n"
        return line.text + "\n"


def _row_problem(first: int, last: int, reason: str) -> LineProblem:
    if last > first:  # a quoted cell ran over several lines: say which, none goes unmentioned
        reason += f" (the row of lines {first}-{last})"
    return LineProblem(first, "", reason)


def read_csv(lines: Iterable[Line]) -> Iterator[Record | LineProblem]:
    """Rows of a CSV file; line numbers count the header as 1. A row is reported at the line
    it starts on; an unreadable line at its own number (and the row it was part of)."""
    text = _Text(lines)
    reader = csv.reader(text, strict=True)  # `"a"b` or a quote open at the end: an error
    csv.field_size_limit(MAX_LINE_BYTES)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as error:
        raise FileProblem(1, f"not valid CSV ({error})") from None
    if text.bad:
        raise FileProblem(1, f"the header cannot be read: {text.bad[0].problem}")
    cols = columns(header)
    while True:
        first = reader.line_num + 1
        problem: LineProblem | None = None
        try:
            row = next(reader)
        except StopIteration:
            row = []
        except csv.Error as error:
            row, problem = [], _row_problem(first, reader.line_num, f"not valid CSV ({error})")
        last = reader.line_num
        for bad in text.bad:
            yield LineProblem(bad.number, "", bad.problem)
        spans_bad = any(first <= bad.number <= last for bad in text.bad) and last > first
        text.bad.clear()
        if problem is not None:
            yield problem
        elif spans_bad:
            yield _row_problem(first, last, "holds a line that cannot be read")
        elif any(cell.strip(" \t\r") for cell in row):
            if len(row) != len(cols):
                reason = f"has {len(row)} cells, the header has {len(cols)}"
                yield _row_problem(first, last, reason)
            else:
                yield _event(cols, row, first)
        elif last < first:  # nothing more was read: the end of the file
            return
