"""Mixpanel export lines to ingest messages: ids of each ID merge, times, reserved properties."""

from __future__ import annotations

from typing import Any

import pytest

from services.common.formats import FieldError
from services.common.formats.mixpanel import convert
from tests.unit.formats.refused import assert_refused


def line(name: str, **properties: Any) -> dict[str, Any]:
    return {"event": name, "properties": {"time": 1791446112, "$insert_id": "i-1", **properties}}


def test_time_is_seconds_or_milliseconds_since_1970() -> None:
    seconds = convert(line("E", distinct_id="u")).event
    millis = convert(line("E", distinct_id="u", time=1791446112000)).event
    assert seconds is not None and millis is not None
    assert seconds.event_time == millis.event_time
    assert seconds.event_time.ToJsonString() == "2026-10-08T07:55:12Z"


def test_the_event_id_is_mixpanels_own_deduplication_key() -> None:
    base = convert(line("E", distinct_id="u")).event
    assert base is not None and base.event_id.startswith("mp-")
    assert convert(line("E", distinct_id="u", Extra=1)).event.event_id == base.event_id  # type: ignore[union-attr]
    for other in (
        line("F", distinct_id="u"),
        line("E", distinct_id="v"),
        line("E", distinct_id="u", time=1791446113),
        line("E", distinct_id="u", **{"$insert_id": "i-2"}),
    ):
        assert convert(other).event.event_id != base.event_id  # type: ignore[union-attr]
    no_insert_id = {"event": "E", "properties": {"distinct_id": "u"}}
    assert convert(no_insert_id).event.event_id == convert(dict(no_insert_id)).event.event_id  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("properties", "user", "anonymous", "linked"),
    [
        ({"distinct_id": "u1"}, "u1", "", False),
        ({"distinct_id": "$device:d1", "$device_id": "d1"}, "", "d1", False),
        ({"distinct_id": "$device:d1"}, "", "d1", False),
        ({"distinct_id": "d1", "$device_id": "d1"}, "", "d1", False),  # original ID merge
        ({"distinct_id": "u1", "$device_id": "d1", "$user_id": "u1"}, "u1", "d1", True),
        ({"distinct_id": "u1", "$device_id": "d1"}, "u1", "d1", True),
        ({"distinct_id": 12345}, "12345", "", False),
    ],
)
def test_distinct_id_device_id_and_user_id_become_our_ids(
    properties: dict[str, Any], user: str, anonymous: str, linked: bool
) -> None:
    converted = convert(line("E", **properties))
    assert converted.event is not None
    assert (converted.event.user_id, converted.event.anonymous_id) == (user, anonymous)
    assert (converted.link is not None) == linked


def test_identify_and_create_alias_join_an_anonymous_id_to_a_user() -> None:
    (identify,) = convert(
        line("$identify", distinct_id="u1", **{"$anon_id": "d1", "$identified_id": "u1"})
    ).identifies
    assert (identify.user_id, identify.anonymous_id) == ("u1", "d1")
    assert identify.event_time.ToJsonString() == "2026-10-08T07:55:12Z"
    (alias,) = convert(line("$create_alias", distinct_id="d2", alias="u2")).identifies
    assert (alias.user_id, alias.anonymous_id) == ("u2", "d2")


def test_merge_is_refused_because_both_ids_may_be_users() -> None:
    with pytest.raises(FieldError) as refused:
        convert(line("$merge", **{"$distinct_ids": ["a", "b"]}))
    assert refused.value.field == "event" and "not imported" in refused.value.reason


def test_reserved_properties_fill_the_context_and_mixpanels_own_are_dropped() -> None:
    event = convert(
        line(
            "Purchase",
            distinct_id="u1",
            token="secret-ish",
            mp_processing_time_ms=1,
            **{
                "$city": "Paris",
                "mp_country_code": "FR",
                "$os": "iOS",
                "$os_version": "18.1",
                "$app_version_string": "3.4.1",
                "$latitude": 48.85,
                "$longitude": 2.35,
                "$browser": "Mobile Safari",
                "$region": "Ile-de-France",
                "Plan Type": "pro",
            },
        )
    ).event
    assert event is not None
    context = event.context
    assert (context.city, context.country, context.os, context.platform) == (
        "Paris",
        "FR",
        "iOS 18.1",
        "ios",
    )
    assert context.app_version == "3.4.1"
    assert (context.location.latitude, context.location.longitude) == (48.85, 2.35)
    assert set(event.properties) == {"$browser", "$region", "Plan_Type"}


def test_mixpanels_own_event_names_map_to_ours() -> None:
    assert convert(line("$mp_web_page_view", distinct_id="u")).event.name == "Page Viewed"  # type: ignore[union-attr]
    assert convert(line("$ae_first_open", distinct_id="u")).event.name == "$app_installed"  # type: ignore[union-attr]
    assert convert(line("$ae_updated", distinct_id="u")).event.name == "ae_updated"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("source", "field", "reason"),
    [
        ({"event": "E"}, "properties.distinct_id", "is required"),
        ({"event": 1, "properties": {}}, "event", "must be a string"),
        ({"event": "E", "properties": "x"}, "properties", "must be an object"),
        (line("E", distinct_id="u", time="noon"), "properties.time", "is not a number"),
        (line("E", distinct_id="u", time=-5), "properties.time", "since 1970"),
        (line("E", distinct_id="u", time=1e300), "properties.time", "since 1970"),
        (line("E", distinct_id=["u"]), "properties.distinct_id", "must be a string"),
        (line("$identify", distinct_id="u"), "properties.$anon_id", "is required"),
        (line("$create_alias", distinct_id="d"), "properties.alias", "is required"),
        (line("E", distinct_id="u", **{"$latitude": 1}), "properties.$longitude", "is needed"),
        (line("", distinct_id="u"), "event", "is required"),
        (line("!!!", distinct_id="u"), "event", "no letter or digit"),
    ],
)
def test_a_wrong_field_is_named_by_its_source_path(
    source: dict[str, Any], field: str, reason: str
) -> None:
    assert_refused(convert, source, field, reason)
