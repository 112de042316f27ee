"""Per-app thresholds of lifecycle and RFM, with documented defaults."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.eventlog.events import ACCOUNT_CLOSED, APP_UNINSTALLED, UNSUBSCRIBED_ALL

DAY_US = 86_400_000_000


@dataclass(frozen=True)
class LifecyclePolicy:
    """When a user is new, active, loyal, dormant, churned or reactivated.

    Dormancy is adaptive once a user has `adaptive_min_gaps` gaps between active
    days: dormant after `adaptive_factor` x their usual gap (the median of the last
    `adaptive_recent_gaps`); a weekly user is dormant after two silent weeks, a
    daily user after two silent days. Before that, after `dormant_days`. Churned
    after max(`churn_days`, `churn_factor` x the dormancy threshold), or at once on
    an explicit churn event.
    """

    new_days: float = 7
    dormant_days: float = 14
    churn_days: float = 30
    adaptive: bool = True
    adaptive_min_gaps: int = 3
    adaptive_recent_gaps: int = 10
    adaptive_factor: float = 2.0
    churn_factor: float = 2.0
    reactivated_days: float = 7
    loyal_window_days: int = 28
    loyal_min_active_days: int = 12
    # Events older than this (against the recorded clock) no longer change lifecycle.
    late_limit_days: float = 7
    churn_events: frozenset[str] = frozenset({APP_UNINSTALLED, UNSUBSCRIBED_ALL, ACCOUNT_CLOSED})

    def __post_init__(self) -> None:
        if self.new_days <= 0 or self.dormant_days <= 0 or self.reactivated_days <= 0:
            msg = "new_days, dormant_days and reactivated_days must be positive"
            raise ValueError(msg)
        if self.churn_days <= self.dormant_days:
            msg = "churn_days must be larger than dormant_days"
            raise ValueError(msg)
        if self.loyal_min_active_days > self.loyal_window_days:
            msg = "loyal_min_active_days cannot exceed loyal_window_days"
            raise ValueError(msg)


@dataclass(frozen=True)
class RfmPolicy:
    """RFM over purchases: which event is a purchase, which property its amount."""

    purchase_event: str = "Order Completed"
    amount_property: str = "revenue"
    window_days: int = 365
    # Scores are settled at the first tick of each interval this long by the recorded
    # clock: cut points of all purchasers, and every score they or a purchase moved, as a
    # fresh quintile computation would give. 1: at every tick (one a minute by default).
    recompute_minutes: int = 1


@dataclass(frozen=True)
class AppPolicy:
    lifecycle: LifecyclePolicy = field(default_factory=LifecyclePolicy)
    rfm: RfmPolicy = field(default_factory=RfmPolicy)
