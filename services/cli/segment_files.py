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

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from services.cli import safe_yaml
from services.common.segments.definition import (
    LIMITS,
    SEGMENT_ID,
    DefinitionError,
    find_cycle,
    parse,
)
from services.common.segments.limits import label

_FIELDS = frozenset({"segment_id", "display_name", "description", "condition"})
MAX_SEGMENTS = 1_000


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
    """The parsed YAML of `path` (`-` reads stdin); SegmentFileError if unreadable.

    Read within the limits of `safe_yaml` (file size, nesting, nodes with aliases expanded).
    """
    try:
        return safe_yaml.load(safe_yaml.read_text(path))
    except OSError as error:
        raise SegmentFileError(f"{path}: cannot read ({error.strerror})") from None
    except safe_yaml.YamlFileError as error:
        raise SegmentFileError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        raise SegmentFileError(f"{path}: not valid YAML ({error})") from None


def _segment(item: Any, where: str) -> SegmentSpec:
    if not isinstance(item, dict):
        raise SegmentFileError(f"{where}: expected a mapping")
    unknown = [key for key in item if key not in _FIELDS]
    if unknown:
        raise SegmentFileError(f"{where}.{label(unknown[0])}: unknown field")
    segment_id = item.get("segment_id")
    if not isinstance(segment_id, str) or not SEGMENT_ID.fullmatch(segment_id):
        raise SegmentFileError(
            f"{where}.segment_id: lowercase letters, digits and -, 1 to 63 characters"
        )
    for name in ("display_name", "description"):
        if not isinstance(item.get(name) or "", str):
            raise SegmentFileError(f"{where}.{name}: must be text")
    try:
        definition = parse(item.get("condition"), f"{where}.condition", limits=LIMITS)
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
        if len(items) > MAX_SEGMENTS:
            raise SegmentFileError(f"{path}: segments: at most {MAX_SEGMENTS} in one file")
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
    return _ordered(specs)


def _ordered(specs: dict[str, SegmentSpec]) -> tuple[SegmentSpec, ...]:
    """File order, except that a segment comes after those it references (no recursion:
    a chain of references may be as long as the file)."""
    ordered: list[SegmentSpec] = []
    placed: set[str] = set()
    for first in specs:
        stack = [(first, False)]
        while stack:
            sid, refs_placed = stack.pop()
            spec = specs.get(sid)
            if spec is None or sid in placed:
                continue  # defined elsewhere (the service checks), or placed already
            if refs_placed:
                placed.add(sid)
                ordered.append(spec)
                continue
            stack.append((sid, True))
            stack.extend((ref, False) for ref in sorted(spec.references, reverse=True))
    return tuple(ordered)
