"""Which tracked events convert which exposures (a send, or a control withholding)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from services.campaign.domain.model import ConversionGoal


@dataclass(frozen=True)
class Exposure:
    send_id: str
    campaign_id: str
    app_id: str
    user_id: str
    # When the message was sent (control: when it would have been).
    start_us: int


@dataclass(frozen=True)
class Tracked:
    app_id: str
    user_id: str
    event_id: str
    name: str
    time_us: int
    properties: Mapping[str, Any]


@dataclass(frozen=True)
class Conversion:
    send_id: str
    time_us: int
    event_id: str


def _matches(goal: ConversionGoal, event: Tracked) -> bool:
    if event.name != goal.event_name:
        return False
    return all(event.properties.get(k) == v for k, v in goal.property_equals.items())


def conversions(
    exposures: Iterable[Exposure],
    events: Iterable[Tracked],
    goals: Mapping[str, ConversionGoal],
) -> list[Conversion]:
    """The first goal event within each exposure's attribution window, if any."""
    by_user: dict[tuple[str, str], list[Tracked]] = {}
    for event in events:
        by_user.setdefault((event.app_id, event.user_id), []).append(event)
    out: list[Conversion] = []
    for exposure in exposures:
        goal = goals.get(exposure.campaign_id)
        if goal is None:
            continue
        end = exposure.start_us + goal.window_s * 1_000_000
        hits = [
            e
            for e in by_user.get((exposure.app_id, exposure.user_id), ())
            if exposure.start_us <= e.time_us <= end and _matches(goal, e)
        ]
        if hits:
            first = min(hits, key=lambda e: e.time_us)
            out.append(Conversion(exposure.send_id, first.time_us, first.event_id))
    return out
