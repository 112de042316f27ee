"""Segment files: YAML with one segment, or several under `segments:`.

    segment_id: cart-abandoners          # or, for several:  segments: [ {...}, {...} ]
    display_name: Cart abandoners
    description: Added to cart, no purchase within a day
    condition:
      inaction: {did: Added to Cart, not_did: Order Completed, within: 24h}

Read and checked before anything is sent: every problem names the file and the path
inside it (`segments.yaml: segments[2].condition.events.window: '3x' is not a duration`).
Segments come back in an order where the ones a segment references come before it, so
they can be created one after the other. `cohortflow segments apply|preview|diff` and
`cohortflow demo` read the same format.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from services.projector.domain.segments.definition import (
    SEGMENT_ID,
    DefinitionError,
    find_cycle,
    parse,
)

_FIELDS = frozenset({"segment_id", "display_name", "description", "condition"})


class SegmentFileError(ValueError):
    """A file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class SegmentSpec:
    segment_id: str
    display_name: str
    description: str
    # The readable form (definition.parse has accepted it).
    condition: dict[str, Any]
    references: frozenset[str] = frozenset()


def read_yaml(path: Path) -> Any:
    """The parsed YAML of `path` (`-` reads stdin); SegmentFileError if unreadable."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
        return yaml.safe_load(text)
    except OSError as error:
        raise SegmentFileError(f"{path}: cannot read ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise SegmentFileError(f"{path}: not valid YAML ({error})") from None


def _segment(item: Any, where: str) -> SegmentSpec:
    if not isinstance(item, dict):
        raise SegmentFileError(f"{where}: expected a mapping")
    unknown = sorted(set(item) - _FIELDS)
    if unknown:
        raise SegmentFileError(f"{where}.{unknown[0]}: unknown field")
    segment_id = item.get("segment_id")
    if not isinstance(segment_id, str) or not SEGMENT_ID.fullmatch(segment_id):
        raise SegmentFileError(
            f"{where}.segment_id: lowercase letters, digits and -, 1 to 63 characters"
        )
    for name in ("display_name", "description"):
        if not isinstance(item.get(name) or "", str):
            raise SegmentFileError(f"{where}.{name}: must be text")
    try:
        definition = parse(item.get("condition"), f"{where}.condition")
    except DefinitionError as error:
        raise SegmentFileError(str(error)) from None
    return SegmentSpec(
        segment_id=segment_id,
        display_name=str(item.get("display_name") or segment_id),
        description=str(item.get("description") or ""),
        condition=item["condition"],
        references=definition.references,
    )


def load_segments(path: Path) -> tuple[SegmentSpec, ...]:
    """The file's segments, referenced ones first; SegmentFileError for any problem."""
    data = read_yaml(path)
    if isinstance(data, dict) and "segments" in data:
        items = data["segments"]
        if not isinstance(items, list) or not items:
            raise SegmentFileError(f"{path}: expected a list under `segments:` (not empty)")
        places = [f"{path}: segments[{i}]" for i in range(len(items))]
    elif isinstance(data, dict) and "segment_id" in data:
        items, places = [data], [f"{path}: segment"]
    else:
        raise SegmentFileError(
            f"{path}: expected a segment (segment_id, condition) or a list under `segments:`"
        )
    specs: dict[str, SegmentSpec] = {}
    for item, where in zip(items, places, strict=True):
        spec = _segment(item, where)
        if spec.segment_id in specs:
            raise SegmentFileError(f"{where}.segment_id: {spec.segment_id!r} appears twice")
        specs[spec.segment_id] = spec
    graph = {sid: spec.references for sid, spec in specs.items()}
    for sid in specs:
        cycle = find_cycle(sid, graph)
        if cycle:
            raise SegmentFileError(f"{path}: segment references loop: {' -> '.join(cycle)}")
    ordered: list[SegmentSpec] = []

    def place(sid: str) -> None:
        spec = specs.get(sid)
        if spec is None or spec in ordered:
            return  # defined elsewhere (the service checks), or placed already
        for ref in sorted(spec.references):
            place(ref)
        ordered.append(spec)

    for sid in specs:
        place(sid)
    return tuple(ordered)
