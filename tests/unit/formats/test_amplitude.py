"""Amplitude export lines to ingest messages: ids, times, places, $identify user properties."""

from __future__ import annotations

from typing import Any

import pytest

from services.common.formats.amplitude import convert
from tests.unit.formats.refused import assert_refused


def row(kind: str, **fields: Any) -> dict[str, Any]:
    return {
        "event_type": kind,
        "device_id": "dev-1",
        "event_time": "2026-01-02 03:04:05.678000",
        "uuid": "uuid-1",
        **fields,
    }


def test_an_event_keeps_its_time_ids_properties_and_place() -> None:
    converted = convert(
        row(
            "Order Completed",
            user_id="u1",
            **{"$insert_id": "ins-1"},
            event_properties={"revenue": 9.5, "items": ["a", "b"]},
            user_properties={"plan": "free"},
            country="United States",
            city="Austin",
            location_lat="30.27",
            location_lng=-97.74,
            platform="iOS",
            os_name="ios",
            os_version="18.1",
            version_name="3.4.1",
            language="English",
            ip_address="192.0.2.1",
        )
    )
    event = converted.event
    assert event is not None
    assert (event.event_id, event.user_id, event.anonymous_id) == ("ins-1", "u1", "dev-1")
    assert event.event_time.ToJsonString() == "2026-01-02T03:04:05.678Z"
    assert set(event.properties) == {"revenue", "items"}  # user_properties: a snapshot
    context = event.context
    assert (context.country, context.city, context.locale) == ("US", "Austin", "en")
    assert (context.platform, context.os, context.app_version) == ("ios", "ios 18.1", "3.4.1")
    assert (context.location.latitude, context.location.longitude) == (30.27, -97.74)
    link = converted.link
    assert link is not None and (link.user_id, link.anonymous_id) == ("u1", "dev-1")


def test_the_event_id_is_the_insert_id_else_the_uuid_else_derived() -> None:
    assert convert(row("E", insert_id="ins-2")).event.event_id == "ins-2"  # type: ignore[union-attr]
    assert convert(row("E")).event.event_id == "uuid-1"  # type: ignore[union-attr]
    bare = {"event_type": "E", "device_id": "dev-1"}
    derived = convert(bare).event.event_id  # type: ignore[union-attr]
    assert derived.startswith("amp-") and derived == convert(dict(bare)).event.event_id  # type: ignore[union-attr]


def test_the_time_falls_back_to_client_event_time_then_milliseconds() -> None:
    source = {"event_type": "E", "device_id": "d", "client_event_time": "2026-01-02 03:04:05"}
    assert convert(source).event.event_time.ToJsonString() == "2026-01-02T03:04:05Z"  # type: ignore[union-attr]
    millis = {"event_type": "E", "device_id": "d", "time": 1767323045000}
    assert convert(millis).event.event_time.ToJsonString() == "2026-01-02T03:04:05Z"  # type: ignore[union-attr]


def test_identify_sets_traits_from_set_and_set_once_and_drops_other_operations() -> None:
    converted = convert(
        row(
            "$identify",
            user_id="u1",
            user_properties={
                "$set": {"plan": "premium", "email": "eve@example.com"},
                "$setOnce": {"plan": "free", "first_source": "ads"},
                "$add": {"logins": 1},
                "$unset": {"old": "-"},
            },
            country="DE",
        )
    )
    (request,) = converted.identifies
    assert converted.event is None
    assert {k: v.string_value for k, v in request.traits.items()} == {
        "plan": "premium",
        "first_source": "ads",
    }
    assert request.contact.email == "eve@example.com"
    assert (request.user_id, request.anonymous_id) == ("u1", "dev-1")
    assert request.location.country == "DE"
    plain = convert(row("$identify", user_id="u1", user_properties={"plan": "x"})).identifies
    assert plain[0].traits["plan"].string_value == "x"


def test_amplitudes_own_event_names_map_to_ours() -> None:
    names = {
        "[Amplitude] Page Viewed": "Page Viewed",
        "[Amplitude] Application Installed": "$app_installed",
        "session_start": "$session_started",
        "[Amplitude] Deep Link Opened": "Amplitude Deep Link Opened",
    }
    for source, ours in names.items():
        assert convert(row(source)).event.name == ours  # type: ignore[union-attr]


def test_a_country_or_language_name_it_cannot_place_is_left_out() -> None:
    event = convert(row("E", country="Anonymous Proxy", language="Klingon-ish")).event
    assert event is not None and event.context.country == "" and event.context.locale == ""


@pytest.mark.parametrize(
    ("source", "field", "reason"),
    [
        ({"event_type": "E"}, "user_id", "user_id or device_id is required"),
        (row("$groupidentify"), "event_type", "not imported"),
        (row(None), "event_type", "is required"),
        (row("E", event_time="02/01/2026"), "event_time", "ISO-8601"),
        (row("E", event_time=1767323045), "event_time", "must be a string"),
        (row("E", user_id={"id": 1}), "user_id", "must be a string"),
        (row("E", event_properties="x"), "event_properties", "must be an object"),
        (row("E", location_lat=91, location_lng=0), "location_lat", "between -90 and 90"),
        (row("E", location_lat=0, location_lng="east"), "location_lng", "is not a number"),
        (row("$identify", user_properties=[1]), "user_properties", "must be an object"),
        (
            row("$identify", user_properties={"$set": "x"}),
            "user_properties.$set",
            "must be an object",
        ),
    ],
)
def test_a_wrong_field_is_named_by_its_source_path(
    source: dict[str, Any], field: str, reason: str
) -> None:
    assert_refused(convert, source, field, reason)
