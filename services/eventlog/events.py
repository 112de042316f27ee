"""The facts recorded in the cohortflow event log.

Every class here is stored by its topic (module path and class name), so this
module must not move. Payloads hold JSON-native values only (str, float, int,
bool, lists and dicts of those): times are integer microseconds since the Unix
epoch, UTC. That keeps the stored form stable, language neutral and fast to
decode in the projector.

Each user event is a one-event "aggregate" whose id is derived from
(app, kind, event_id): a retried event collides on the primary key of the
stored events table, so idempotency costs no read.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Fixed namespace for deterministic ids of log events. Changing it would break idempotency.
EVENTS_NAMESPACE = uuid.UUID("6f1c1f8e-0a39-4a4e-9a8e-2f1b1c0c7a51")

# A property or trait value as stored: scalars and homogeneous lists of scalars.
# Timestamps are kept apart (see `time_properties`) so the type survives JSON.
StoredValue = str | float | bool | list[str] | list[float] | list[bool]


_NAMESPACE_BYTES = EVENTS_NAMESPACE.bytes
# uuid.uuid5, without its per-call overhead (same result; see the unit test).
_VERSION_MASK = ~(0xF000 << 64) & ~(0xC000 << 48)
_VERSION_BITS = (0x5000 << 64) | (0x8000 << 48)


def event_uuid(app_id: str, kind: str, event_id: str) -> uuid.UUID:
    """Deterministic log id of a client event: same app, kind and event_id, same id."""
    name = f"{app_id}\x1f{kind}\x1f{event_id}".encode()
    digest = hashlib.sha1(_NAMESPACE_BYTES + name, usedforsecurity=False).digest()
    value = int.from_bytes(digest[:16], "big")
    return uuid.UUID(int=(value & _VERSION_MASK) | _VERSION_BITS)


def us_to_datetime(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, tz=UTC)


def datetime_to_us(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(frozen=True)
class LogEvent:
    """Base of every event in the log (implements eventsourcing's DomainEventProtocol)."""

    originator_id: uuid.UUID
    originator_version: int


@dataclass(frozen=True)
class EventTracked(LogEvent):
    """A user did something in an app (from IngestService.Track / TrackBatch)."""

    KIND = "track"

    app_id: str
    event_id: str
    user_id: str
    anonymous_id: str
    name: str
    event_time_us: int
    received_time_us: int
    properties: dict[str, StoredValue] = field(default_factory=dict)
    # Timestamp-typed properties, microseconds (or lists of them).
    time_properties: dict[str, int | list[int]] = field(default_factory=dict)
    # platform, os, app_version, locale, timezone, country, city (str) and
    # latitude, longitude (float), each present only when given.
    context: dict[str, Any] = field(default_factory=dict)
    # The history import job that brought it (HistoryImportService), "" for a live event.
    # Events stored before the field existed decode with the class default, "".
    history_job: str = ""
    # Properties (but the clear ones) and context, sealed with the user's key; "" when
    # nothing is sealed (and in events stored before sealing). See sealing.py.
    sealed: str = ""


@dataclass(frozen=True)
class UserIdentified(LogEvent):
    """Profile facts about a user (from IngestService.Identify)."""

    KIND = "identify"

    app_id: str
    event_id: str
    user_id: str
    anonymous_id: str
    event_time_us: int
    received_time_us: int
    traits: dict[str, StoredValue] = field(default_factory=dict)
    time_traits: dict[str, int | list[int]] = field(default_factory=dict)
    # email, phone, push_token: present only when given.
    contact: dict[str, str] = field(default_factory=dict)
    # channel name ("email", "sms", ...) -> granted?
    consents: dict[str, bool] = field(default_factory=dict)
    timezone: str = ""
    # country, city (str), latitude, longitude (float): present only when given.
    location: dict[str, Any] = field(default_factory=dict)
    # As EventTracked.history_job.
    history_job: str = ""
    # Traits, time traits, contact, consents, time zone and location, sealed (sealing.py).
    sealed: str = ""


@dataclass(frozen=True)
class UserErased(LogEvent):
    """A user's personal data was erased (PrivacyService.EraseUser): the keys of the user
    and of the anonymous ids linked to them are destroyed, so every sealed field of their
    events reads as erased from now on, in a replay too. Appended to the user's partition
    after the keys are gone; its id comes from the request id (a retry stores it once)."""

    KIND = "erase"

    app_id: str
    user_id: str
    request_id: str
    # Who asked (the API key's name) and when (microseconds, the keyring's clock).
    requested_by: str
    erased_time_us: int
    # The destroyed keys (hex) and their subjects (the user id, "anonymous:<id>").
    key_ids: list[str] = field(default_factory=list)
    subjects: list[str] = field(default_factory=list)


def erasure_uuid(app_id: str, request_id: str) -> uuid.UUID:
    return event_uuid(app_id, UserErased.KIND, request_id)


# Reserved event names ("$" prefix) with a meaning to the projector.
APP_INSTALLED = "$app_installed"
APP_OPENED = "$app_opened"
SESSION_STARTED = "$session_started"
APP_UNINSTALLED = "$app_uninstalled"
UNSUBSCRIBED_ALL = "$unsubscribed_all"
ACCOUNT_CLOSED = "$account_closed"
SYSTEM_EVENT_NAMES = frozenset(
    {
        APP_INSTALLED,
        APP_OPENED,
        SESSION_STARTED,
        APP_UNINSTALLED,
        UNSUBSCRIBED_ALL,
        ACCOUNT_CLOSED,
    }
)


@dataclass(frozen=True)
class ClockTicked(LogEvent):
    """The recorded clock: time passed. Written by the projector's ticker once a tick.

    Inactivity (dormancy, churn, windows sliding past) is derived from these, so
    replaying the log replays time too. The id is derived from the tick time:
    several tickers write each tick once.
    """

    KIND = "tick"

    tick_time_us: int


def tick_uuid(tick_time_us: int) -> uuid.UUID:
    return event_uuid("", ClockTicked.KIND, str(tick_time_us))


# ---- history import (HistoryImportService): the contract with the projector ---------------
#
# Ingest appends, in every partition: HistoryImportStarted, then the job's events (ordinary
# EventTracked / UserIdentified with `history_job` set) interleaved with the app's
# AppClockTicked in event-time order, then HistoryImportFinished. Between the two markers
# the app's recorded clock moves only by its own ticks, and its live events are folded
# after the history. The tick rule is `services.ingest.domain.history_clock`.


@dataclass(frozen=True)
class HistoryImportStarted(LogEvent):
    """An app's history import begins appending (in every partition)."""

    KIND = "historystart"

    app_id: str
    job_id: str
    # The time of the history's first event: where the app's recorded clock starts.
    first_event_us: int


@dataclass(frozen=True)
class AppClockTicked(LogEvent):
    """One app's recorded clock during its history import (in every partition)."""

    KIND = "apptick"

    app_id: str
    tick_time_us: int


@dataclass(frozen=True)
class HistoryImportFinished(LogEvent):
    """An app's history import has appended all it will (in every partition)."""

    KIND = "historyfinish"

    app_id: str
    job_id: str
    # History events the job newly stored in the log (all partitions together).
    events: int


def app_tick_uuid(app_id: str, tick_time_us: int) -> uuid.UUID:
    """Id of an app's clock tick: a resumed or repeated import stores each tick once."""
    return event_uuid(app_id, AppClockTicked.KIND, str(tick_time_us))


def history_marker_uuid(app_id: str, kind: str, job_id: str) -> uuid.UUID:
    """Id of a job's Started or Finished marker (`kind` is the class's KIND)."""
    return event_uuid(app_id, kind, job_id)
