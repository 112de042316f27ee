"""The demo's files: segments.yaml and campaigns.yaml, read and checked before anything runs.

Every problem names its file and the path inside it, e.g.
`deploy/demo/segments.yaml: segments[2].condition.events.window: '3x' is not a duration ...`.
The formats are documented at the top of the files in deploy/demo/.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cohortflow.campaigns.v1 import campaigns_pb2 as pb

from services.cli.demo.campaign_form import FormError, campaign_from_form
from services.projector.domain.segments.definition import (
    SEGMENT_ID,
    DefinitionError,
    find_cycle,
    parse,
)

# The examples `make demo` applies (the repo's deploy/demo/).
DEMO_FILES = Path(__file__).resolve().parents[3] / "deploy" / "demo"
SEGMENTS_FILE = "segments.yaml"
CAMPAIGNS_FILE = "campaigns.yaml"
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_SEGMENT_FIELDS = frozenset({"segment_id", "display_name", "description", "condition"})


class DemoFileError(ValueError):
    """A demo file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class SegmentSpec:
    segment_id: str
    display_name: str
    description: str
    # The readable form (definition.parse has accepted it).
    condition: dict[str, Any]
    references: frozenset[str] = frozenset()


@dataclass(frozen=True)
class CampaignSpec:
    key: str
    campaign: pb.Campaign

    @property
    def request_id(self) -> str:
        """CreateCampaign's idempotency key: the same file creates the campaign once."""
        return f"demo:{self.key}"


@dataclass(frozen=True)
class DemoFiles:
    # In an order where each segment's references come before it.
    segments: tuple[SegmentSpec, ...]
    campaigns: tuple[CampaignSpec, ...]
    folder: Path = field(default=Path("."))


def _items(path: Path, top: str) -> list[Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise DemoFileError(f"{path}: cannot read ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise DemoFileError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get(top), list):
        raise DemoFileError(f"{path}: expected a list under `{top}:`")
    return data[top]


def _segment(item: Any, where: str) -> SegmentSpec:
    if not isinstance(item, dict):
        raise DemoFileError(f"{where}: expected a mapping")
    unknown = sorted(set(item) - _SEGMENT_FIELDS)
    if unknown:
        raise DemoFileError(f"{where}.{unknown[0]}: unknown field")
    segment_id = item.get("segment_id")
    if not isinstance(segment_id, str) or not SEGMENT_ID.fullmatch(segment_id):
        raise DemoFileError(
            f"{where}.segment_id: lowercase letters, digits and -, 1 to 63 characters"
        )
    try:
        definition = parse(item.get("condition"), f"{where}.condition")
    except DefinitionError as error:
        raise DemoFileError(str(error)) from None
    return SegmentSpec(
        segment_id=segment_id,
        display_name=str(item.get("display_name") or segment_id),
        description=str(item.get("description") or ""),
        condition=item["condition"],
        references=definition.references,
    )


def load_segments(path: Path) -> tuple[SegmentSpec, ...]:
    """The file's segments, referenced ones first; DemoFileError for any problem."""
    specs: dict[str, SegmentSpec] = {}
    for i, item in enumerate(_items(path, "segments")):
        where = f"{path}: segments[{i}]"
        spec = _segment(item, where)
        if spec.segment_id in specs:
            raise DemoFileError(f"{where}.segment_id: {spec.segment_id!r} appears twice")
        specs[spec.segment_id] = spec
    graph = {sid: spec.references for sid, spec in specs.items()}
    for sid in specs:
        cycle = find_cycle(sid, graph)
        if cycle:
            raise DemoFileError(f"{path}: segment references loop: {' -> '.join(cycle)}")
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


def load_campaigns(path: Path) -> tuple[CampaignSpec, ...]:
    """The file's campaigns; DemoFileError for any problem."""
    specs: list[CampaignSpec] = []
    for i, item in enumerate(_items(path, "campaigns")):
        where = f"{path}: campaigns[{i}]"
        if not isinstance(item, dict):
            raise DemoFileError(f"{where}: expected a mapping")
        body = dict(item)
        key = body.pop("key", None)
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise DemoFileError(f"{where}.key: required, 1-64 letters, digits, - or _")
        if any(spec.key == key for spec in specs):
            raise DemoFileError(f"{where}.key: {key!r} appears twice")
        try:
            specs.append(CampaignSpec(key, campaign_from_form(body, where)))
        except FormError as error:
            raise DemoFileError(str(error)) from None
    return tuple(specs)


def load(folder: Path) -> DemoFiles:
    """segments.yaml and campaigns.yaml of `folder`, checked."""
    return DemoFiles(
        segments=load_segments(folder / SEGMENTS_FILE),
        campaigns=load_campaigns(folder / CAMPAIGNS_FILE),
        folder=folder,
    )
