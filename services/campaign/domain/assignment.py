"""Deterministic hashing: send ids, variant/control assignment, the global holdout.

Everything here is a pure function of its inputs, so an assignment can be
recomputed (and uplift re-derived) from the recorded facts at any time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from services.campaign.domain.model import Variant

CONTROL = "control"
HOLDOUT = "holdout"
_SCALE = float(1 << 64)


def unit_hash(*parts: str) -> float:
    """A uniform number in [0, 1) from the parts (SHA-256, first 64 bits)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def send_id(campaign_id: str, version: int, user_id: str, change_id: str) -> str:
    """Idempotency key of one send: same campaign version, user and change, same id."""
    name = f"{campaign_id}\x1f{version}\x1f{user_id}\x1f{change_id}".encode()
    return hashlib.sha256(name).hexdigest()[:32]


def in_global_holdout(app_id: str, user_id: str, salt: str, percent: float) -> bool:
    return percent > 0 and unit_hash("holdout", app_id, user_id, salt) * 100 < percent


def assign(
    user_id: str, campaign_id: str, salt: str, control_percent: float, variants: Sequence[Variant]
) -> str:
    """The variant name for this user, or CONTROL."""
    u = unit_hash("assign", user_id, campaign_id, salt or campaign_id) * 100
    if u < control_percent:
        return CONTROL
    # Rescale the rest of [0, 100) onto the variants' cumulative weights.
    point = (u - control_percent) / (100 - control_percent) * sum(v.weight for v in variants)
    for variant in variants:
        point -= variant.weight
        if point < 0:
            return variant.name
    return variants[-1].name
