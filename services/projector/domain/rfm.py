"""RFM: recency, frequency and monetary scores by quintile, and the named groups.

Scores are 1 to 5 by rank among the app's purchasers (those with a purchase in the
window), the same rule for any number of them. With n purchasers:

- recency R = ceil(5 * c / n), c = purchasers whose last purchase is no later than
  yours (you included): ties share the best score of their rank, so whoever bought
  last scores 5, even the only purchaser of an app;
- frequency F = 1 + floor(5 * b / n), b = purchasers with strictly fewer purchases
  than you: ties share the lowest score, so where most buy once, one-time buyers
  score 1 (and the only purchaser of an app, having bought once, scores 1);
- monetary M likewise by amount.

So the first purchaser of an app is (5, 1, 1), New Customers. Cut points (the values
at the quintile ranks) are kept so a score needs no ranking: a value scores one
more for each cut point it exceeds (F, M), or reaches (R).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from services.eventlog.vocabulary import RFM_GROUPS as RFM_GROUPS  # the groups scores map to
from services.eventlog.vocabulary import RfmGroup
from services.projector.domain.policy import DAY_US, RfmPolicy
from services.projector.domain.user import User

_G = RfmGroup

# GRID[recency score][frequency-monetary score], both 1..5 (index 0 unused).
_GROUPS = {
    5: (
        _G.NEW_CUSTOMERS,
        _G.POTENTIAL_LOYALISTS,
        _G.POTENTIAL_LOYALISTS,
        _G.CHAMPIONS,
        _G.CHAMPIONS,
    ),
    4: (_G.PROMISING, _G.POTENTIAL_LOYALISTS, _G.POTENTIAL_LOYALISTS, _G.LOYAL, _G.CHAMPIONS),
    3: (_G.PROMISING, _G.ABOUT_TO_SLEEP, _G.NEED_ATTENTION, _G.LOYAL, _G.LOYAL),
    2: (_G.HIBERNATING, _G.ABOUT_TO_SLEEP, _G.NEED_ATTENTION, _G.AT_RISK, _G.AT_RISK),
    1: (_G.LOST, _G.HIBERNATING, _G.AT_RISK, _G.CANT_LOSE_THEM, _G.CANT_LOSE_THEM),
}


# As plain str: what users keep and the store writes.
_GRID = {recency: tuple(g.value for g in row) for recency, row in _GROUPS.items()}


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


def first_day(day: int, policy: RfmPolicy) -> int:
    """The first UTC day of the window of purchases counted on `day`."""
    return day - policy.window_days + 1


def values_in(user: User, first: int) -> RfmValues | None:
    """The user's RFM values over purchase days from `first` on; None if there are none."""
    count, amount = 0, 0.0
    for day, (c, a) in user.purchases.items():
        if day >= first:
            count += int(c)
            amount += a
    if count == 0 or user.last_purchase_us is None:
        return None
    return RfmValues(user.last_purchase_us, count, amount)


def forget_before(user: User, first: int) -> None:
    """Drop purchase days before `first`: they left the window and can never count again."""
    for day in [d for d in user.purchases if d < first]:
        del user.purchases[day]


def low_cut(ordered: Sequence[float], k: int) -> float:
    """The k-th cut point (1..4) of frequency and monetary: ties score down."""
    return ordered[max(0, math.ceil(k * len(ordered) / 5) - 1)]


def high_cut(ordered: Sequence[float], k: int) -> float:
    """The k-th cut point (1..4) of recency: ties score up."""
    return ordered[k * len(ordered) // 5]


def _cuts(values: Sequence[float], cut: Callable[[Sequence[float], int], float]) -> list[float]:
    ordered = sorted(values)
    return [cut(ordered, k) for k in range(1, 5)]


def score_above(value: float, cuts: Sequence[float]) -> int:
    """1 + the cut points `value` exceeds (frequency, monetary)."""
    return 1 + sum(1 for cut in cuts if value > cut)


def score_reaching(value: float, cuts: Sequence[float]) -> int:
    """1 + the cut points `value` reaches (recency)."""
    return 1 + sum(1 for cut in cuts if value >= cut)


# Version of the cut point rules; cut points stored under another are recomputed whole.
RULE = 2


@dataclass
class Quintiles:
    """Cut points of one app's purchasers, as of the last recomputation."""

    recency: list[float] = field(default_factory=list)
    frequency: list[float] = field(default_factory=list)
    monetary: list[float] = field(default_factory=list)
    purchasers: int = 0
    rule: int = RULE

    @classmethod
    def of(cls, values: Iterable[RfmValues]) -> Quintiles:
        items = list(values)
        if not items:
            return cls()
        return cls(
            recency=_cuts([float(v.last_purchase_us) for v in items], high_cut),
            frequency=_cuts([float(v.purchases) for v in items], low_cut),
            monetary=_cuts([v.amount for v in items], low_cut),
            purchasers=len(items),
        )

    def scores(self, values: RfmValues) -> list[int]:
        if not self.purchasers:
            return [3, 3, 3]
        return [
            score_reaching(float(values.last_purchase_us), self.recency),
            score_above(float(values.purchases), self.frequency),
            score_above(values.amount, self.monetary),
        ]

    def to_dict(self) -> dict:
        return {
            "recency": self.recency,
            "frequency": self.frequency,
            "monetary": self.monetary,
            "purchasers": self.purchasers,
            "rule": self.rule,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Quintiles:
        return cls(**{"rule": 1, **data})  # stored before rules were versioned: rule 1
