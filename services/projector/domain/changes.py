"""Changes the projector derives: the records that become the change stream."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

CHANGES_NAMESPACE = uuid.UUID("b5d0a7f2-3c1e-4e8a-9b6f-0d2c4e6a8f10")

LIFECYCLE = "lifecycle"
RFM = "rfm"
MEMBERSHIP = "membership"

# Causes.
EVENT = "event"
TIME = "time"
LATE_EVENT = "late_event"
REDEFINITION = "redefinition"
RECOMPUTATION = "recomputation"
# The user was erased (UserErased): they leave every segment.
ERASURE = "erasure"


_NAMESPACE_BYTES = CHANGES_NAMESPACE.bytes

# A change made longer than this after it took effect reports the past (historical).
HISTORICAL_AFTER_US = 3_600_000_000


def lateness_us(effective_us: int, recorded_us: int) -> int:
    """How long after it took effect a change was made (0 if it took effect later)."""
    return max(0, recorded_us - effective_us)


def historical(effective_us: int, recorded_us: int) -> bool:
    """Whether a change reports the past: made more than HISTORICAL_AFTER_US after it took
    effect (a late event, deadlines passed while the clock stood still, history)."""
    return lateness_us(effective_us, recorded_us) > HISTORICAL_AFTER_US


def change_id(app_id: str, user_id: str, sequence: int, kind: str, position: int) -> str:
    """Deterministic: replaying the same log gives every change the same id (a uuid5)."""
    name = f"{app_id}\x1f{user_id}\x1f{sequence}\x1f{kind}\x1f{position}".encode()
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name, usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    hexed = digest.hex()
    return f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:]}"


@dataclass(slots=True)
class Change:
    """One derived change (treated as immutable once emitted)."""

    change_id: str
    kind: str
    app_id: str
    user_id: str
    sequence: int
    from_value: str
    to_value: str
    cause: str
    effective_us: int
    position: int
    recorded_us: int
    event_ids: tuple[str, ...] = ()
    event_name: str = ""
    deadline_us: int | None = None
    correction: bool = False
    corrected_since_us: int | None = None
    # RFM: [recency, frequency, monetary] scores and the raw values.
    scores: tuple[int, int, int] | None = None
    recency_days: float = 0.0
    purchases: int = 0
    amount: float = 0.0
    # Membership: the segment and its version.
    segment_id: str = ""
    segment_version: int = 0
    # False for changes of a silent redefinition: recorded, not published.
    published: bool = True
    # Made while the app folded an imported history (history_mode.py).
    imported: bool = False
