"""What the simulator produces, free of any wire format: events, profile updates, sends.

An `Emission` is one thing a device or backend sends at a (simulated) moment: a
session's events, a late upload of an offline session, a retry of an earlier batch
with the same event ids, or an Identify call. Times are microseconds since the epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

Scalar = str | float | bool
US_PER_S = 1_000_000
US_PER_DAY = 86_400 * US_PER_S


@dataclass(frozen=True)
class Place:
    platform: str
    os: str
    app_version: str
    locale: str
    timezone: str
    country: str
    city: str
    latitude: float
    longitude: float


@dataclass(frozen=True)
class SimEvent:
    event_id: str
    user_id: str
    name: str
    time_us: int
    properties: dict[str, Scalar]
    place: Place


@dataclass(frozen=True)
class SimIdentify:
    event_id: str
    user_id: str
    time_us: int
    traits: dict[str, Scalar]
    email: str
    phone: str
    push_token: str
    # channel name ("email", "push", "sms", "in_app") -> granted?
    consents: dict[str, bool]
    timezone: str
    country: str
    city: str
    latitude: float
    longitude: float


class Kind(StrEnum):
    SESSION = "session"
    LATE = "late"  # an offline session uploaded later, with its true event times
    RETRY = "retry"  # the same events again: the client did not see the first answer
    IDENTIFY = "identify"


@dataclass(frozen=True)
class Emission:
    send_us: int
    user_index: int
    seq: int
    kind: Kind
    events: tuple[SimEvent, ...] = ()
    identify: SimIdentify | None = None

    @property
    def order(self) -> tuple[int, int, int]:
        """Total order of sending: time, then user, then the user's own sequence."""
        return (self.send_us, self.user_index, self.seq)


@dataclass(frozen=True)
class Window:
    """The simulated period [start_us, end_us): nothing happens outside it."""

    start_us: int
    end_us: int


@dataclass(frozen=True)
class Behaviour:
    """Knobs of the population; defaults give a plausible consumer shopping app."""

    # share of users per cadence archetype
    daily_share: float = 0.2
    weekly_share: float = 0.35
    # chance a session is uploaded late (offline device) and that a batch is retried
    late_fraction: float = 0.03
    duplicate_fraction: float = 0.02
    # chance a user who stopped coming uninstalls, and that a churned user returns
    uninstall_share: float = 0.35
    return_share: float = 0.25
    # chance a new user signs up (Identify) at install
    identify_share: float = 0.85
    # log-normal order revenue: median exp(mu), spread sigma
    revenue_mu: float = 3.4
    revenue_sigma: float = 0.6
    # chance a session with a cart ends in an order (else the cart is abandoned)
    checkout_share: float = 0.4
