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

from cohortflow.campaigns.v1 import campaigns_pb2 as pb

from services.cli.segment_files import (
    SegmentFileError,
    SegmentSpec,
    load_segments,
    read_yaml,
)
from services.common.campaign_form import FormError, campaign_from_form

# The examples `make demo` applies (the repo's deploy/demo/).
DEMO_FILES = Path(__file__).resolve().parents[3] / "deploy" / "demo"
SEGMENTS_FILE = "segments.yaml"
CAMPAIGNS_FILE = "campaigns.yaml"
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


# A demo file that cannot be used; the message names the file and the field.
DemoFileError = SegmentFileError


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
    data = read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get(top), list):
        raise DemoFileError(f"{path}: expected a list under `{top}:`")
    return data[top]


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
