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

from services.cli.records import (
    CONTEXT,
    COORDINATES,
    CSV_COLUMNS,
    PROP_PREFIX,
    FileProblem,
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
            raise FileProblem(f"line 1: column {name!r} appears twice")
        seen.add(name)
        if name.startswith(PROP_PREFIX):
            key, _, kind = name[len(PROP_PREFIX) :].partition(":")
            if not key:
                raise FileProblem(f"line 1: column {name!r} names no property")
            if kind and kind not in KINDS:
                raise FileProblem(
                    f"line 1: column {name!r}: unknown type {kind!r}; use one of {', '.join(KINDS)}"
                )
            out.append(Column(name, key, kind or None))
        elif name in CSV_COLUMNS:
            out.append(Column(name))
        else:
            raise FileProblem(
                f"line 1: unknown column {name!r}; expected {', '.join(CSV_COLUMNS)}"
                f" or {PROP_PREFIX}<key>[:type]"
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


def read_csv(lines: Iterable[str]) -> Iterator[Record | LineProblem]:
    """Rows of a CSV file (opened with newline=""); line numbers count the header as 1."""
    reader = csv.reader(iter(lines))
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as error:
        raise FileProblem(f"line 1: not valid CSV ({error})") from None
    cols = columns(header)
    while True:
        line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield LineProblem(line, "", f"not valid CSV ({error})")
            continue
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(cols):
            yield LineProblem(line, "", f"has {len(row)} cells, the header has {len(cols)}")
            continue
        yield _event(cols, row, line)
