"""What ingest accepts and refuses, field by field."""

from __future__ import annotations

import dataclasses

import pytest

from services.ingest.domain.model import (
    Channel,
    ConsentDraft,
    ContextDraft,
    Coordinates,
    EventDraft,
    IdentifyDraft,
    Instant,
    InvalidValue,
    Limits,
    LocationDraft,
)
from services.ingest.domain.validation import check_event, check_identify

NOW = 1_790_000_000_000_000  # 2026-09-21, microseconds
HOUR = 3_600_000_000
DAY = 24 * HOUR
LIMITS = Limits()

GOOD = EventDraft(
    event_id="evt-1",
    user_id="alice",
    anonymous_id="",
    name="Added to Cart",
    event_time_us=NOW - HOUR,
    properties={"sku": "A-1", "amount": 12.5, "gift": False, "at": Instant(NOW - DAY)},
    context=ContextDraft(
        platform="ios",
        os="iOS 18.1",
        app_version="4.2.0",
        locale="de-DE",
        timezone="Europe/Berlin",
        country="DE",
        city="Berlin",
        location=Coordinates(52.52, 13.405),
    ),
)


def fields(draft: EventDraft, limits: Limits = LIMITS) -> list[str]:
    return [v.field for v in check_event(draft, NOW, limits)]


def with_(**changes: object) -> EventDraft:
    return dataclasses.replace(GOOD, **changes)  # type: ignore[arg-type]


def with_context(**changes: object) -> EventDraft:
    return with_(context=dataclasses.replace(GOOD.context, **changes))


def test_a_complete_event_is_accepted() -> None:
    assert check_event(GOOD, NOW, LIMITS) == []


def test_anonymous_only_and_missing_time_are_fine() -> None:
    assert fields(with_(user_id="", anonymous_id="device-9", event_time_us=None)) == []


@pytest.mark.parametrize(
    ("draft", "bad_field"),
    [
        (with_(event_id=""), "event_id"),
        (with_(event_id="x" * 129), "event_id"),
        (with_(event_id="has space"), "event_id"),
        (with_(event_id="naïve"), "event_id"),
        (with_(user_id="", anonymous_id=""), "user_id"),
        (with_(user_id=" alice"), "user_id"),
        (with_(user_id="a" * 257), "user_id"),
        (with_(anonymous_id="dev\n1"), "anonymous_id"),
        (with_(name=""), "name"),
        (with_(name="n" * 129), "name"),
        (with_(name="$made_up"), "name"),
        (with_(name="bad\tname"), "name"),
        (with_(name="trailing "), "name"),
        (with_(name="-starts-with-dash"), "name"),
        (with_(event_time_us=NOW + 25 * HOUR), "event_time"),
        (with_(event_time_us=NOW - 3651 * DAY), "event_time"),
        (with_(event_time_us=0), "event_time"),
        (with_context(location=Coordinates(90.5, 0)), "context.location.latitude"),
        (with_context(location=Coordinates(-91, 0)), "context.location.latitude"),
        (with_context(location=Coordinates(0, 180.01)), "context.location.longitude"),
        (with_context(location=Coordinates(float("nan"), 0)), "context.location.latitude"),
        (with_context(timezone="Mars/Olympus"), "context.timezone"),
        (with_context(country="DEU"), "context.country"),
        (with_context(locale="german!"), "context.locale"),
        (with_context(platform="p" * 129), "context.platform"),
    ],
)
def test_each_bad_field_is_named(draft: EventDraft, bad_field: str) -> None:
    assert fields(draft) == [bad_field]


def test_system_event_names_are_allowed() -> None:
    for name in ("$app_installed", "$app_uninstalled", "$account_closed", "$unsubscribed_all"):
        assert fields(with_(name=name)) == []


def test_near_future_within_skew_is_accepted() -> None:
    assert fields(with_(event_time_us=NOW + 23 * HOUR)) == []


@pytest.mark.parametrize(
    ("properties", "bad_field"),
    [
        ({"": "x"}, 'properties[""]'),
        ({"1st": "x"}, 'properties["1st"]'),
        ({"_type_": "x"}, 'properties["_type_"]'),
        ({"k" * 65: "x"}, f'properties["{"k" * 65}"]'),
        ({"s": "x" * 1025}, 'properties["s"]'),
        ({"n": float("inf")}, 'properties["n"]'),
        ({"n": float("nan")}, 'properties["n"]'),
        ({"t": Instant(NOW + 30 * DAY)}, 'properties["t"]'),
        ({"l": ["a", 1.0]}, 'properties["l"]'),
        ({"l": [True, 1.0]}, 'properties["l"]'),
        ({"l": ["x"] * 101}, 'properties["l"]'),
        ({"l": ["a", "b" * 2000]}, 'properties["l"][1]'),
        ({"v": InvalidValue("value has no kind")}, 'properties["v"]'),
        ({"l": ["a", InvalidValue("lists cannot contain lists")]}, 'properties["l"]'),
    ],
)
def test_bad_properties_are_named_by_key(properties: dict, bad_field: str) -> None:
    assert fields(with_(properties=properties)) == [bad_field]


def test_too_many_properties() -> None:
    draft = with_(properties={f"p{i}": float(i) for i in range(101)})
    assert fields(draft) == ["properties"]


def test_oversized_event_is_refused_by_configured_limit() -> None:
    limits = Limits(max_event_bytes=2048)
    draft = with_(properties={f"p{i}": "x" * 100 for i in range(30)})
    assert fields(draft, limits) == ["properties"]
    assert fields(draft) == []


def test_every_violation_is_reported_not_just_the_first() -> None:
    draft = EventDraft(
        event_id="",
        user_id="",
        anonymous_id="",
        name="",
        event_time_us=NOW + 100 * DAY,
        context=ContextDraft(location=Coordinates(100, 200)),
    )
    assert fields(draft) == [
        "event_id",
        "user_id",
        "name",
        "event_time",
        "context.location.latitude",
        "context.location.longitude",
    ]


GOOD_IDENTIFY = IdentifyDraft(
    event_id="id-1",
    user_id="alice",
    anonymous_id="device-9",
    event_time_us=None,
    traits={"plan": "pro", "age": 34.0, "signed_up": Instant(NOW - 300 * DAY)},
    email="alice@example.com",
    phone="+4915112345678",
    push_token="fcm:abc",
    consents=[
        ConsentDraft(Channel.EMAIL, True),
        ConsentDraft(Channel.SMS, False),
    ],
    timezone="America/New_York",
    location=LocationDraft("US", "New York", Coordinates(40.7, -74.0)),
)


def identify_fields(**changes: object) -> list[str]:
    draft = dataclasses.replace(GOOD_IDENTIFY, **changes)  # type: ignore[arg-type]
    return [v.field for v in check_identify(draft, NOW, LIMITS)]


def test_a_complete_identify_is_accepted() -> None:
    assert identify_fields() == []


@pytest.mark.parametrize(
    ("changes", "bad_field"),
    [
        ({"event_id": ""}, "event_id"),
        ({"user_id": "", "anonymous_id": ""}, "user_id"),
        ({"email": "not-an-email"}, "contact.email"),
        ({"phone": "015112345678"}, "contact.phone"),
        ({"push_token": "a\nb"}, "contact.push_token"),
        ({"consents": [ConsentDraft(None, True)]}, "consents[0].channel"),
        ({"consents": [ConsentDraft(Channel.EMAIL, None)]}, "consents[0].status"),
        (
            {"consents": [ConsentDraft(Channel.SMS, True), ConsentDraft(Channel.SMS, False)]},
            "consents[1].channel",
        ),
        ({"timezone": "Europe/Atlantis"}, "timezone"),
        ({"location": LocationDraft("Germany", "", None)}, "location.country"),
        (
            {"location": LocationDraft("", "", Coordinates(0, -181))},
            "location.coordinates.longitude",
        ),
        ({"traits": {"x": float("nan")}}, 'traits["x"]'),
        ({"event_time_us": NOW + 10 * DAY}, "event_time"),
    ],
)
def test_identify_bad_fields_are_named(changes: dict, bad_field: str) -> None:
    assert identify_fields(**changes) == [bad_field]
