"""What a segment definition must satisfy before it is written, checked against the write model.

A draft's references are looked up among the app's `Segment` aggregates in the log, not in
the read model: a segment created a moment ago can be referenced at once, whether or not the
projector has read its definition yet. Problems name the request fields as SegmentService's
clients write them (`segment.display_name`, `segment.description`, `segment.condition`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from services.common.domain_errors import FieldViolation, InvalidInput
from services.common.segments.definition import (
    LIMITS,
    Definition,
    DefinitionError,
    find_cycle,
    parse,
)
from services.common.text import name_problem, text_problem
from services.eventlog.segments import Segment

MAX_NAME = 200
MAX_DESCRIPTION = 2000
CONDITION = "segment.condition"


class InvalidDefinition(InvalidInput):
    """The draft (its names, its condition or its references) cannot be a segment."""


@dataclass(frozen=True)
class Draft:
    """A segment definition as a client wrote it: the condition in its dict form."""

    segment_id: str
    display_name: str
    description: str
    condition: dict[str, Any]


# The live (not archived) segment of the app with this id, from the log; None if there is none.
LiveSegment = Callable[[str, str], Segment | None]


def text_problems(draft: Draft) -> list[FieldViolation]:
    """display_name: no control characters at all; description: free text."""
    problems: list[FieldViolation] = []
    if len(draft.display_name) > MAX_NAME:
        problems.append(FieldViolation("segment.display_name", f"at most {MAX_NAME} characters"))
    elif problem := name_problem(draft.display_name):
        problems.append(FieldViolation("segment.display_name", problem))
    if len(draft.description) > MAX_DESCRIPTION:
        problems.append(
            FieldViolation("segment.description", f"at most {MAX_DESCRIPTION} characters")
        )
    elif problem := text_problem(draft.description):
        problems.append(FieldViolation("segment.description", problem))
    return problems


def reference_problems(
    app_id: str, draft: Draft, definition: Definition, live: LiveSegment
) -> list[FieldViolation]:
    """Unknown or archived segments the draft refers to, and a loop of references through it.

    The loop is looked for over the latest definitions of the segments reachable from the
    draft, with the draft in place of its own segment's definition.
    """
    graph: dict[str, frozenset[str]] = {draft.segment_id: definition.references}
    unknown: set[str] = set()
    pending = sorted(definition.references, reverse=True)
    while pending:
        segment_id = pending.pop()
        if segment_id in graph:
            continue
        segment = live(app_id, segment_id)
        if segment is None:
            unknown.add(segment_id)
            graph[segment_id] = frozenset()
        else:
            graph[segment_id] = parse(segment.definition).references
            pending.extend(sorted(graph[segment_id] - graph.keys(), reverse=True))
    problems = [
        FieldViolation(CONDITION, f"refers to unknown segment {ref!r}")
        for ref in sorted(definition.references & unknown)
    ]
    cycle = find_cycle(draft.segment_id, graph)
    if cycle:
        problems.append(
            FieldViolation(CONDITION, "segment references would loop: " + " -> ".join(cycle))
        )
    return problems


def checked(
    app_id: str, draft: Draft, live: LiveSegment, problems: Sequence[FieldViolation] = ()
) -> Definition:
    """The draft's parsed definition, or InvalidDefinition naming every problem: the ones the
    edge found in the request (`problems`, e.g. a malformed id), then the draft's own."""
    found = [*problems, *text_problems(draft)]
    definition: Definition | None = None
    try:
        definition = parse(draft.condition, CONDITION, limits=LIMITS)
    except DefinitionError as error:
        found.extend(FieldViolation(path, message) for path, message in error.problems)
    if definition is not None:
        found.extend(reference_problems(app_id, draft, definition, live))
    if found:
        raise InvalidDefinition(found)
    assert definition is not None
    return definition
