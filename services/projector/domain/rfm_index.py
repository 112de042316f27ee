"""The RFM values of one app's purchasers, kept sorted so cut points are fresh at any time.

Each purchase moves one user's values; the index keeps the three values of every
purchaser in sorted lists, so the quintile cut points of the whole population are
read in O(log n), and the users whose score a move of the cut points changes are
exactly those whose value lies between the old and the new cut point: only they
are rescored. That is what lets every recomputation equal a fresh one over all
purchasers without redoing the whole population.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from sortedcontainers import SortedList

from services.projector.domain.rfm import RULE, Quintiles, RfmValues, high_cut, low_cut


def _above(value: float) -> tuple[float]:
    """A bound that sorts after every entry (value, user) of `value` and before the next."""
    return (math.nextafter(value, math.inf),)


class _Column:
    """(value, user) of one dimension, sorted (by value, then user: each entry unique)."""

    def __init__(self, entries: list[tuple[float, str]] | None = None) -> None:
        self.entries = SortedList(entries or ())

    def cuts(self, high: bool) -> list[float]:
        view = _Values(self.entries)
        cut = high_cut if high else low_cut
        return [cut(view, k) for k in range(1, 5)]

    def between(self, a: float, b: float, high: bool) -> list[str]:
        """Users whose score against a cut point at `a` differs from one at `b`: values in
        (low, high] for scores that count cut points exceeded, [low, high) for reached."""
        low, top = min(a, b), max(a, b)
        if high:
            start, end = self.entries.bisect_left((low,)), self.entries.bisect_left((top,))
        else:
            start = self.entries.bisect_left(_above(low))
            end = self.entries.bisect_left(_above(top))
        return [user for _, user in self.entries[start:end]]


class _Values(Sequence[float]):
    """The values of a column as a read-only sequence (for the cut point rules)."""

    def __init__(self, entries: SortedList) -> None:
        self._entries = entries

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, index: int) -> float:  # type: ignore[override]
        return float(self._entries[index][0])


class RfmIndex:
    """The current RFM values of an app's purchasers and their cut points."""

    def __init__(self) -> None:
        self.values: dict[str, RfmValues] = {}
        self._recency = _Column()
        self._frequency = _Column()
        self._monetary = _Column()
        # The cut points of the values as they are (None: they moved since).
        self._quintiles: Quintiles | None = None

    def rebuild(self, values: Mapping[str, RfmValues | None]) -> None:
        """Every purchaser's values at once (faster than one by one)."""
        self.values = {u: v for u, v in values.items() if v is not None}
        self._quintiles = None
        self._recency = _Column([(float(v.last_purchase_us), u) for u, v in self.values.items()])
        self._frequency = _Column([(float(v.purchases), u) for u, v in self.values.items()])
        self._monetary = _Column([(v.amount, u) for u, v in self.values.items()])

    def put(self, user_id: str, values: RfmValues | None) -> None:
        """The user's values now (None: no purchase left in the window)."""
        self._quintiles = None
        old = self.values.pop(user_id, None)
        if old is not None:
            for column, value in self._pairs(old):
                column.entries.remove((value, user_id))
        if values is not None:
            self.values[user_id] = values
            for column, value in self._pairs(values):
                column.entries.add((value, user_id))

    def _pairs(self, values: RfmValues) -> list[tuple[_Column, float]]:
        return [
            (self._recency, float(values.last_purchase_us)),
            (self._frequency, float(values.purchases)),
            (self._monetary, values.amount),
        ]

    def quintiles(self) -> Quintiles:
        """Cut points of all purchasers now: what Quintiles.of over all values gives
        (computed once per state of the values: an app's clock ticking through a history
        recomputes far more often than purchases move them)."""
        if self._quintiles is None:
            self._quintiles = (
                Quintiles(
                    recency=self._recency.cuts(high=True),
                    frequency=self._frequency.cuts(high=False),
                    monetary=self._monetary.cuts(high=False),
                    purchasers=len(self.values),
                )
                if self.values
                else Quintiles()
            )
        return self._quintiles

    def moved(self, old: Quintiles, new: Quintiles) -> set[str] | None:
        """Users whose scores differ between `old` and `new` cut points (None: anyone may,
        `old` being empty or of another rule)."""
        if not old.purchasers or old.rule != RULE or not new.purchasers:
            return None
        users: set[str] = set()
        for column, before, after, high in (
            (self._recency, old.recency, new.recency, True),
            (self._frequency, old.frequency, new.frequency, False),
            (self._monetary, old.monetary, new.monetary, False),
        ):
            for a, b in zip(before, after, strict=True):
                if a != b:
                    users.update(column.between(a, b, high))
        return users
