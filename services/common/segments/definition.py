"""Segment definitions: the readable dict form (YAML, the log) parsed into condition nodes.

The dict form is what users write and what the log stores:

    all:                                   # also any: [...], none: [...]
      - trait: {key: plan, op: "=", value: pro}
      - trait: {key: signed_up, op: "<", time: "2026-01-01T00:00:00+01:00"}
      - geo: {within_km: 10, of: [52.52, 13.405]}
      - geo: {countries: [DE, AT], cities: [Berlin]}
      - lifecycle: [active, loyal]
      - rfm: [champions, at_risk]
      - events: {name: Added to Cart, where: [{property: category, op: "=", value: shoes}],
                 window: 30d, aggregate: count, op: ">=", value: 3}
      - recency: {name: App Opened, more_than: 7d}
      - first_seen: {before: "2026-01-01T00:00:00Z"}      # or after / more_than / less_than
      - inaction: {did: Added to Cart, not_did: Order Completed, within: 24h}
      - segment: other-segment

Every problem is reported with the path of the node that has it, e.g.
`condition.all[2].events.window: "3x" is not a duration like 30d, 24h or 15m`.

The parts: `nodes` (vocabulary and parsed form), `limits` (size limits, checked first),
`reader` and `kinds` (the parser and its table of kinds), `timing` (durations and times).
This module is the entry point and keeps the names other code imports.
"""

from __future__ import annotations

from typing import Any

from services.common.segments.kinds import KINDS
from services.common.segments.limits import LIMITS, STORED_LIMITS, Limits, measure
from services.common.segments.nodes import (
    AGGREGATES,
    COMPARISONS,
    LIFECYCLE_STATES,
    OPERATORS,
    RFM_GROUPS,
    SEGMENT_ID,
    AllOf,
    AnyOf,
    Definition,
    Events,
    Filter,
    FirstSeen,
    Geo,
    Inaction,
    Lifecycle,
    Node,
    NoneOf,
    Recency,
    Rfm,
    Scalar,
    SegmentRef,
    TimeValue,
    Trait,
)
from services.common.segments.reader import DefinitionError, Reader
from services.common.segments.timing import format_duration, parse_duration, parse_time

__all__ = [
    "AGGREGATES",
    "COMPARISONS",
    "KINDS",
    "LIFECYCLE_STATES",
    "LIMITS",
    "MAX_DEPTH",
    "MAX_NODES",
    "OPERATORS",
    "RFM_GROUPS",
    "SEGMENT_ID",
    "STORED_LIMITS",
    "AllOf",
    "AnyOf",
    "Definition",
    "DefinitionError",
    "Events",
    "Filter",
    "FirstSeen",
    "Geo",
    "Inaction",
    "Lifecycle",
    "Limits",
    "Node",
    "NoneOf",
    "Recency",
    "Rfm",
    "Scalar",
    "SegmentRef",
    "TimeValue",
    "Trait",
    "find_cycle",
    "format_duration",
    "parse",
    "parse_duration",
    "parse_time",
]

MAX_DEPTH = LIMITS.max_depth
MAX_NODES = LIMITS.max_conditions


def parse(data: Any, path: str = "condition", *, limits: Limits = STORED_LIMITS) -> Definition:
    """A Definition, or DefinitionError naming every bad node.

    Pass `limits=LIMITS` for a definition that is new (a request, a file); the default,
    `STORED_LIMITS`, is for definitions read back from the log, which must parse as they
    did when they were accepted.
    """
    problem = measure(data, path, limits)
    if problem is not None:
        raise DefinitionError([problem])
    reader = Reader(KINDS, limits)
    root = reader.node(data, path)
    if reader.problems or root is None:
        raise DefinitionError(reader.report(path) or [(path, "is required")])
    return Definition(root, frozenset(reader.segments))


def find_cycle(segment_id: str, references: dict[str, frozenset[str]]) -> list[str] | None:
    """A reference cycle through `segment_id` in the graph {segment: segments it refers to}."""
    stack: list[tuple[str, list[str]]] = [(segment_id, [segment_id])]
    seen: set[str] = set()
    while stack:
        current, path = stack.pop()
        for nxt in sorted(references.get(current, frozenset())):
            if nxt == segment_id:
                return [*path, nxt]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None
