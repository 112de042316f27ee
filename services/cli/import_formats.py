"""Which shape an import file's JSON lines are in, and reading them in that shape.

JSONL import files hold cohortflow's own events or a tool's export lines (Segment,
Mixpanel, Amplitude: services.common.formats), chosen with `--from` or told from the
first lines: up to `SAMPLE_OBJECTS` lines that are JSON objects (within the first
`SAMPLE_LINES` lines) must all look like the same one. Lines that look like none of them
leave the choice to cohortflow's own shape, whose reader names what is wrong with them.
Lines that look like different formats stop the import before anything is sent, naming
the lines and what each looks like.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from enum import StrEnum
from typing import Any

from services.cli.lines import FileProblem, Line
from services.cli.records import TOP_LEVEL, LineProblem, Record, json_objects, read_jsonl
from services.common.formats import CONVERTERS, Convert, FieldError
from services.common.formats.detect import GUESSES, Undecided, decide

SAMPLE_OBJECTS = 20
SAMPLE_LINES = 50


class Source(StrEnum):
    """The shape of the lines: cohortflow's own, or the export of a tool."""

    cohortflow = "cohortflow"
    segment = "segment"
    mixpanel = "mixpanel"
    amplitude = "amplitude"


TITLES = {
    Source.cohortflow: "cohortflow JSONL",
    Source.segment: "Segment calls",
    Source.mixpanel: "Mixpanel export lines",
    Source.amplitude: "Amplitude export lines",
}


def looks_like_cohortflow(source: dict[str, Any]) -> str:
    if "name" not in source or set(source) - set(TOP_LEVEL):
        return ""
    return "name" + "".join(f", {key}" for key in ("event_id", "user_id") if key in source)


_GUESSES = {**GUESSES, Source.cohortflow.value: looks_like_cohortflow}


def convert_lines(lines: Iterable[Line], convert: Convert) -> Iterator[Record | LineProblem]:
    """Each line converted by a format's `convert`; a bad field is that line's problem."""
    for item in json_objects(lines):
        if isinstance(item, LineProblem):
            yield item
            continue
        line, source = item
        try:
            converted = convert(source)
        except FieldError as error:
            yield LineProblem(line.number, error.field, error.reason)
            continue
        yield Record(line.number, converted.event, converted.identifies, converted.link)


class FormatReader:
    """Reads a JSONL file in the shape given (`explicit`) or told from its first lines;
    `chosen` and `detected` say which, once reading has begun."""

    def __init__(self, explicit: Source | None) -> None:
        self.chosen = explicit
        self.detected = False

    def records(self, lines: Iterator[Line]) -> Iterator[Record | LineProblem]:
        """The records of `lines`; the shape is decided at the first one asked for (a
        FileProblem if the first lines look like different formats)."""
        if self.chosen is None:
            head = list(itertools.islice(lines, SAMPLE_LINES))
            self.chosen = _detect(head)
            self.detected = True
            lines = itertools.chain(head, lines)
        if self.chosen is Source.cohortflow:
            yield from read_jsonl(lines)
        else:
            yield from convert_lines(lines, CONVERTERS[self.chosen.value])

    def description(self) -> str:
        """How the lines were read, for the summary."""
        if self.chosen is None:
            return ""
        how = " (told from its first lines; --from chooses)" if self.detected else ""
        return f"read as {TITLES[self.chosen]}{how}"


def _detect(head: list[Line]) -> Source:
    samples = [
        (item[0].number, item[1])
        for item in json_objects(head)
        if not isinstance(item, LineProblem)
    ][:SAMPLE_OBJECTS]
    try:
        found = decide(samples, _GUESSES)
    except Undecided as undecided:
        choices = ", ".join(f"--from {source.value}" for source in Source)
        line = samples[0][0] if samples else 1
        raise FileProblem(
            line, f"cannot tell the format: {undecided}; pass one of {choices}"
        ) from None
    return Source(found) if found else Source.cohortflow
