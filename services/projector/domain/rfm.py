"""RFM: recency, frequency and monetary scores by quintile, and the named groups.

Scores are 1 to 5: a value scores one more for each quintile cut point it
exceeds. Cut points come from the app's purchasers at the last recomputation,
so a score only moves when the user's values or the cut points move.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from services.projector.domain.policy import DAY_US, RfmPolicy
from services.projector.domain.user import User, day_of

CHAMPIONS = "champions"
LOYAL = "loyal"
POTENTIAL_LOYALISTS = "potential_loyalists"
NEW_CUSTOMERS = "new_customers"
PROMISING = "promising"
NEED_ATTENTION = "need_attention"
ABOUT_TO_SLEEP = "about_to_sleep"
AT_RISK = "at_risk"
CANT_LOSE_THEM = "cant_lose_them"
HIBERNATING = "hibernating"
LOST = "lost"
RFM_GROUPS = (
    CHAMPIONS,
    LOYAL,
    POTENTIAL_LOYALISTS,
    NEW_CUSTOMERS,
    PROMISING,
    NEED_ATTENTION,
    ABOUT_TO_SLEEP,
    AT_RISK,
    CANT_LOSE_THEM,
    HIBERNATING,
    LOST,
)

# GRID[recency score][frequency-monetary score], both 1..5 (index 0 unused).
_GRID = {
    5: (NEW_CUSTOMERS, POTENTIAL_LOYALISTS, POTENTIAL_LOYALISTS, CHAMPIONS, CHAMPIONS),
    4: (PROMISING, POTENTIAL_LOYALISTS, POTENTIAL_LOYALISTS, LOYAL, CHAMPIONS),
    3: (PROMISING, ABOUT_TO_SLEEP, NEED_ATTENTION, LOYAL, LOYAL),
    2: (HIBERNATING, ABOUT_TO_SLEEP, NEED_ATTENTION, AT_RISK, AT_RISK),
    1: (LOST, HIBERNATING, AT_RISK, CANT_LOSE_THEM, CANT_LOSE_THEM),
}


def group_of(recency: int, frequency: int, monetary: int) -> str:
    """The named group of scores: recency against the mean of frequency and monetary."""
    fm = (frequency + monetary + 1) // 2
    return _GRID[recency][fm - 1]


@dataclass(frozen=True)
class RfmValues:
    last_purchase_us: int
    purchases: int
    amount: float

    def recency_days(self, at_us: int) -> float:
        return max(0.0, (at_us - self.last_purchase_us) / DAY_US)


def values_of(user: User, at_us: int, policy: RfmPolicy) -> RfmValues | None:
    """The user's RFM values at `at_us`, or None if no purchase lies within the window."""
    first_day = day_of(at_us) - policy.window_days + 1
    count, amount = 0, 0.0
    for day, (c, a) in user.purchases.items():
        if day >= first_day:
            count += int(c)
            amount += a
    if count == 0 or user.last_purchase_us is None:
        return None
    return RfmValues(user.last_purchase_us, count, amount)


def forget_old_purchases(user: User, at_us: int, policy: RfmPolicy) -> None:
    """Drop purchase days that left the window: they can never count again."""
    first_day = day_of(at_us) - policy.window_days + 1
    for day in [d for d in user.purchases if d < first_day]:
        del user.purchases[day]


def _cuts(values: Sequence[float]) -> list[float]:
    ordered = sorted(values)
    n = len(ordered)
    return [ordered[max(0, math.ceil(k * n / 5) - 1)] for k in range(1, 5)]


def _score(value: float, cuts: Sequence[float]) -> int:
    return 1 + sum(1 for cut in cuts if value > cut)


@dataclass
class Quintiles:
    """Cut points of one app, from its purchasers at the last recomputation."""

    recency: list[float] = field(default_factory=list)
    frequency: list[float] = field(default_factory=list)
    monetary: list[float] = field(default_factory=list)
    purchasers: int = 0

    @classmethod
    def of(cls, values: Iterable[RfmValues]) -> Quintiles:
        items = list(values)
        if not items:
            return cls()
        return cls(
            recency=_cuts([float(v.last_purchase_us) for v in items]),
            frequency=_cuts([float(v.purchases) for v in items]),
            monetary=_cuts([v.amount for v in items]),
            purchasers=len(items),
        )

    def scores(self, values: RfmValues) -> list[int]:
        if not self.purchasers:
            return [3, 3, 3]
        return [
            _score(float(values.last_purchase_us), self.recency),
            _score(float(values.purchases), self.frequency),
            _score(values.amount, self.monetary),
        ]

    def to_dict(self) -> dict:
        return {
            "recency": self.recency,
            "frequency": self.frequency,
            "monetary": self.monetary,
            "purchasers": self.purchasers,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Quintiles:
        return cls(**data)
