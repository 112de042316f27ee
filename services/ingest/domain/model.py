"""Ingest's view of incoming events, free of any wire format.

The gRPC edge translates requests into these drafts without judging them;
`validation` judges them; `build` turns valid drafts into log events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


@dataclass(frozen=True)
class Instant:
    """A timestamp value, microseconds since the Unix epoch (UTC)."""

    us: int


@dataclass(frozen=True)
class InvalidValue:
    """A value the edge could not represent (nested list, empty oneof); explains why."""

    reason: str


Scalar = str | float | bool | Instant
Value = Scalar | list[Scalar | InvalidValue] | InvalidValue


@dataclass(frozen=True)
class Coordinates:
    latitude: float
    longitude: float


@dataclass(frozen=True)
class ContextDraft:
    platform: str = ""
    os: str = ""
    app_version: str = ""
    locale: str = ""
    timezone: str = ""
    country: str = ""
    city: str = ""
    location: Coordinates | None = None


@dataclass(frozen=True)
class EventDraft:
    event_id: str
    user_id: str
    anonymous_id: str
    name: str
    event_time_us: int | None
    properties: dict[str, Value] = field(default_factory=dict)
    context: ContextDraft = field(default_factory=ContextDraft)


class Channel(Enum):
    IN_APP = "in_app"
    EMAIL = "email"
    PUSH = "push"
    SMS = "sms"
    WEBHOOK = "webhook"


@dataclass(frozen=True)
class ConsentDraft:
    channel: Channel | None  # None: not specified
    granted: bool | None  # None: not specified


@dataclass(frozen=True)
class LocationDraft:
    country: str = ""
    city: str = ""
    coordinates: Coordinates | None = None


@dataclass(frozen=True)
class IdentifyDraft:
    event_id: str
    user_id: str
    anonymous_id: str
    event_time_us: int | None
    traits: dict[str, Value] = field(default_factory=dict)
    email: str = ""
    phone: str = ""
    push_token: str = ""
    consents: list[ConsentDraft] = field(default_factory=list)
    timezone: str = ""
    location: LocationDraft | None = None


@dataclass(frozen=True)
class Violation:
    """A bad field: path relative to the event (e.g. "context.location.latitude")."""

    field: str
    description: str


@dataclass(frozen=True)
class Limits:
    """Bounds on what one event may carry. Every one is configurable."""

    max_id_length: int = 128
    max_user_id_length: int = 256
    max_name_length: int = 128
    max_properties: int = 100
    max_property_key_length: int = 64
    max_string_length: int = 1024
    max_list_length: int = 100
    max_event_bytes: int = 32 * 1024
    max_future_skew_us: int = 24 * 3600 * 1_000_000
    max_age_us: int = 3650 * 24 * 3600 * 1_000_000
    # Nothing before 2000-01-01T00:00:00Z is a plausible app event.
    min_time_us: int = 946_684_800_000_000
