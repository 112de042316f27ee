"""Everything the projector keeps about one user, and its stored (dict) form."""

from __future__ import annotations

import bisect
import operator
from dataclasses import dataclass, field
from typing import Any

from services.eventlog.vocabulary import LifecycleState, RfmGroup
from services.projector.domain.policy import DAY_US

# Active days kept per user: enough for adaptive gaps and the loyalty window.
KEPT_ACTIVE_DAYS = 64
# Distinct event names counted per user; more names are counted under "(other)".
MAX_EVENT_NAMES = 200
OTHER_EVENTS = "(other)"


def day_of(time_us: int) -> int:
    return time_us // DAY_US


@dataclass(slots=True)
class User:
    app_id: str
    user_id: str
    # Activity (event time, UTC days).
    first_active_us: int | None = None
    last_active_us: int | None = None
    active_days: list[int] = field(default_factory=list)
    active_day_count: int = 0
    # Median gap between recent active days once there are enough of them, else 0
    # (kept up to date by the engine whenever active days change).
    usual_gap_days: float = 0.0
    churn_event_us: int | None = None
    returned_us: int | None = None
    # Lifecycle as published.
    state: str = LifecycleState.NONE.value
    since_us: int | None = None
    deadline_us: int | None = None
    # Purchases by UTC day: day -> [count, amount].
    purchases: dict[int, list[float]] = field(default_factory=dict)
    last_purchase_us: int | None = None
    rfm_group: str = RfmGroup.NONE.value
    rfm_scores: list[int] = field(default_factory=list)  # [r, f, m] or []
    # Profile.
    first_seen_us: int | None = None
    last_seen_us: int | None = None
    event_count: int = 0
    event_counts: dict[str, int] = field(default_factory=dict)
    traits: dict[str, Any] = field(default_factory=dict)
    time_traits: dict[str, Any] = field(default_factory=dict)
    contact: dict[str, str] = field(default_factory=dict)
    consents: dict[str, bool] = field(default_factory=dict)
    timezone: str = ""
    location: dict[str, Any] = field(default_factory=dict)
    # Changes published for this user so far (all kinds).
    sequence: int = 0
    # Where the user's last event came from (country, city, latitude, longitude).
    place: dict[str, Any] = field(default_factory=dict)
    # Segment trackers: tracker key -> state (see segments.trackers).
    trackers: dict[str, Any] = field(default_factory=dict)
    # Live segment memberships: segment id -> [version, since].
    memberships: dict[str, list[int]] = field(default_factory=dict)
    # Next time a segment membership may change by time alone.
    segment_deadline_us: int | None = None
    # When each timed segment may next change for this user (segment id -> time).
    segment_due: dict[str, int] = field(default_factory=dict)
    # Event times of the latest location observations: the profile's (Identify) and the
    # events' (`place`); see location.py.
    location_us: int | None = None
    place_us: int | None = None
    # When the user last left each segment they are not in (segment id -> effective time):
    # with `memberships`, the time of their latest change per segment.
    left: dict[str, int] = field(default_factory=dict)
    # The RFM values behind `rfm_scores`: [last purchase time, purchases, amount] or [].
    rfm_values: list[float] = field(default_factory=list)
    # Erased (UserErased): personal fields cleared, never in a segment again.
    erased: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.app_id, self.user_id)

    def add_active_day(self, day: int) -> bool:
        """Record an active day; True if it is one not kept before."""
        days = self.active_days
        if days and days[-1] == day:
            return False  # the common case: another event today
        index = bisect.bisect_left(days, day)
        if index < len(days) and days[index] == day:
            return False
        if len(days) >= KEPT_ACTIVE_DAYS and index == 0:
            # Older than everything kept: it only counts.
            self.active_day_count += 1
            return False
        days.insert(index, day)
        self.active_day_count += 1
        if len(days) > KEPT_ACTIVE_DAYS:
            del days[0]
        return True

    def count_event(self, name: str) -> None:
        self.event_count += 1
        counts = self.event_counts
        if name in counts:
            counts[name] += 1
        elif len(counts) < MAX_EVENT_NAMES:
            counts[name] = 1
        else:
            counts[OTHER_EVENTS] = counts.get(OTHER_EVENTS, 0) + 1

    def seen(self, time_us: int) -> None:
        if self.first_seen_us is None or time_us < self.first_seen_us:
            self.first_seen_us = time_us
        if self.last_seen_us is None or time_us > self.last_seen_us:
            self.last_seen_us = time_us

    def pack(self) -> list[Any]:
        """Compact stored form: a version, then every field in declaration order.

        Fields are only ever appended (with defaults), so older rows still unpack.
        """
        return [_PACK_VERSION, *_GET_FIELDS(self)]

    @classmethod
    def unpack(cls, row: list[Any]) -> User:
        if row[0] != _PACK_VERSION:
            msg = f"unknown stored user version {row[0]!r}"
            raise ValueError(msg)
        data = dict(zip(_FIELDS, row[1:], strict=False))
        raw = data.pop("purchases", {})
        data["purchases"] = {int(day): [c, a] for day, (c, a) in raw.items()}
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return {
            name: getattr(self, name)
            for name in self.__slots__  # type: ignore[attr-defined]
            if name != "purchases"
        } | {"purchases": [[day, c, a] for day, (c, a) in sorted(self.purchases.items())]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> User:
        """From `to_dict()` output, or from the user's fields as a JSON object."""
        data = dict(data)
        raw = data.pop("purchases", [])
        if isinstance(raw, dict):  # {"day": [count, amount]}
            purchases = {int(day): [c, a] for day, (c, a) in raw.items()}
        else:  # [[day, count, amount], ...]
            purchases = {int(day): [c, a] for day, c, a in raw}
        return cls(**data, purchases=purchases)


_PACK_VERSION = 1
_FIELDS = tuple(User.__slots__)  # type: ignore[attr-defined]
_GET_FIELDS = operator.attrgetter(*_FIELDS)
