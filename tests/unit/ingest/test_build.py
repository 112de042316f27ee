"""Valid drafts become stored log events with stable ids and typed values."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from services.eventlog.events import EventTracked, datetime_to_us, event_uuid, us_to_datetime
from services.ingest.domain.build import identified_event, split_values, tracked_event
from services.ingest.domain.model import (
    Channel,
    ConsentDraft,
    ContextDraft,
    Coordinates,
    EventDraft,
    IdentifyDraft,
    Instant,
    LocationDraft,
)

RECEIVED = 1_790_000_000_000_000


def test_ids_are_deterministic_per_app_kind_and_event_id() -> None:
    assert event_uuid("a", "track", "e1") == event_uuid("a", "track", "e1")
    assert event_uuid("a", "track", "e1") != event_uuid("b", "track", "e1")
    assert event_uuid("a", "track", "e1") != event_uuid("a", "identify", "e1")


def test_values_keep_their_types_apart() -> None:
    plain, times = split_values(
        {
            "s": "x",
            "n": 3,
            "f": 2.5,
            "b": True,
            "t": Instant(5),
            "ls": ["a", "b"],
            "ln": [1, 2.5],
            "lt": [Instant(1), Instant(2)],
            "empty": [],
        }
    )
    assert plain == {
        "s": "x",
        "n": 3.0,
        "f": 2.5,
        "b": True,
        "ls": ["a", "b"],
        "ln": [1.0, 2.5],
        "empty": [],
    }
    assert isinstance(plain["n"], float)
    assert plain["b"] is True
    assert times == {"t": 5, "lt": [1, 2]}


def test_tracked_event_defaults_event_time_and_normalises_country() -> None:
    draft = EventDraft(
        event_id="e1",
        user_id="u1",
        anonymous_id="",
        name="Opened",
        event_time_us=None,
        context=ContextDraft(country="de", location=Coordinates(1, 2), platform="ios"),
    )
    event = tracked_event("app", draft, RECEIVED)
    assert isinstance(event, EventTracked)
    assert event.originator_id == event_uuid("app", "track", "e1")
    assert event.originator_version == 1
    assert event.event_time_us == RECEIVED == event.received_time_us
    assert event.context == {"platform": "ios", "country": "DE", "latitude": 1.0, "longitude": 2.0}
    later = tracked_event("app", dataclasses.replace(draft, event_time_us=RECEIVED - 10), RECEIVED)
    assert later.event_time_us == RECEIVED - 10


def test_identified_event_carries_contact_consent_and_location() -> None:
    draft = IdentifyDraft(
        event_id="i1",
        user_id="u1",
        anonymous_id="d1",
        event_time_us=None,
        traits={"plan": "pro"},
        email="a@b.co",
        consents=[ConsentDraft(Channel.EMAIL, True), ConsentDraft(Channel.SMS, False)],
        timezone="Europe/Berlin",
        location=LocationDraft("fr", "Paris", Coordinates(48.85, 2.35)),
    )
    event = identified_event("app", draft, RECEIVED)
    assert event.contact == {"email": "a@b.co"}
    assert event.consents == {"email": True, "sms": False}
    assert event.location == {
        "country": "FR",
        "city": "Paris",
        "latitude": 48.85,
        "longitude": 2.35,
    }
    assert event.traits == {"plan": "pro"}
    assert event.anonymous_id == "d1"


def test_microsecond_time_round_trips() -> None:
    moment = datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=UTC)
    assert us_to_datetime(datetime_to_us(moment)) == moment


def test_event_uuid_is_a_standard_uuid5() -> None:
    import uuid

    from services.eventlog.events import EVENTS_NAMESPACE

    for app, kind, event_id in [
        ("a", "track", "e1"),
        ("shop", "identify", "x" * 128),
        ("", "", ""),
    ]:
        expected = uuid.uuid5(EVENTS_NAMESPACE, f"{app}\x1f{kind}\x1f{event_id}")
        assert event_uuid(app, kind, event_id) == expected
        assert event_uuid(app, kind, event_id).version == 5
