"""Conversion rates and uplift versus control, with a normal-approximation interval."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist


@dataclass(frozen=True)
class Uplift:
    difference: float
    lower: float
    upper: float
    relative: float


def rate(converted: int, exposed: int) -> float:
    return converted / exposed if exposed else 0.0


def uplift(
    converted: int, exposed: int, control_converted: int, control_exposed: int, level: float = 0.95
) -> Uplift | None:
    """Variant rate minus control rate, with a Wald interval for a difference of
    two independent proportions. None without both groups."""
    if not exposed or not control_exposed:
        return None
    p1, p0 = converted / exposed, control_converted / control_exposed
    z = NormalDist().inv_cdf(0.5 + level / 2)
    se = math.sqrt(p1 * (1 - p1) / exposed + p0 * (1 - p0) / control_exposed)
    diff = p1 - p0
    return Uplift(diff, diff - z * se, diff + z * se, diff / p0 if p0 else 0.0)
