"""Segment calls to ingest messages: each call type, each mapped field, each named error."""

from __future__ import annotations

from typing import Any

import pytest

from services.common.formats import FieldError
from services.common.formats.identity import LINK_PREFIX
from services.common.formats.segment import convert
from tests.unit.formats.refused import assert_refused


def call(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "messageId": "m-1", "timestamp": "2026-10-05T09:12:03.250Z", **fields}


def test_a_track_keeps_its_id_time_name_properties_and_context() -> None:
    converted = convert(
        call(
            "track",
            userId="u1",
            event="Order Completed",
            properties={"revenue": 89.9, "products": [{"sku": "A"}], "coupon": None},
            context={
                "device": {"type": "iOS", "token": "t"},
                "os": {"name": "iOS", "version": "18.1"},
                "app": {"version": "3.4.1"},
                "locale": "de-DE",
                "timezone": "Europe/Berlin",
                "location": {"country": "Germany", "city": "Berlin"},
                "ip": "203.0.113.24",
            },
        )
    )
    event = converted.event
    assert event is not None and converted.link is None and converted.identifies == ()
    assert (event.event_id, event.user_id, event.name) == ("m-1", "u1", "Order Completed")
    assert event.event_time.ToJsonString() == "2026-10-05T09:12:03.250Z"
    assert event.properties["revenue"].number_value == 89.9
    assert [v.string_value for v in event.properties["products"].list_value.values] == [
        '{"sku":"A"}'
    ]
    assert "coupon" not in event.properties  # null means "not set"
    context = event.context
    assert (context.platform, context.os, context.app_version) == ("ios", "iOS 18.1", "3.4.1")
    assert (context.locale, context.timezone, context.country, context.city) == (
        "de-DE",
        "Europe/Berlin",
        "DE",
        "Berlin",
    )


def test_the_first_time_given_counts_timestamp_then_original_then_sent_then_received() -> None:
    source = {"type": "track", "userId": "u", "event": "E"}
    times = {
        "receivedAt": "2026-01-04T00:00:00Z",
        "sentAt": "2026-01-03T00:00:00Z",
        "originalTimestamp": "2026-01-02T00:00:00Z",
    }
    event = convert(source | times).event
    assert event is not None and event.event_time.ToJsonString() == "2026-01-02T00:00:00Z"
    event = convert(source | {"receivedAt": "2026-01-04T00:00:00Z"}).event
    assert event is not None and event.event_time.ToJsonString() == "2026-01-04T00:00:00Z"
    assert not convert(source).event.HasField("event_time")  # type: ignore[union-attr]


def test_page_and_screen_are_views_with_their_name_and_category_and_campaign_as_utm() -> None:
    page = convert(
        call(
            "page",
            anonymousId="a1",
            name="Home",
            category="Landing",
            properties={"path": "/"},
            context={
                "campaign": {"name": "sale", "source": "google"},
                "library": {"name": "analytics.js"},
            },
        )
    ).event
    assert page is not None and page.name == "Page Viewed" and page.anonymous_id == "a1"
    assert {k: v.string_value for k, v in page.properties.items()} == {
        "path": "/",
        "name": "Home",
        "category": "Landing",
        "utm_campaign": "sale",
        "utm_source": "google",
    }
    assert page.context.platform == "web"  # from the library
    screen = convert(call("screen", userId="u1", name="Cart")).event
    assert screen is not None and screen.name == "Screen Viewed"
    assert screen.properties["name"].string_value == "Cart"


def test_an_event_with_both_ids_links_the_anonymous_id_to_the_user() -> None:
    converted = convert(call("track", userId="u1", anonymousId="a1", event="E"))
    link = converted.link
    assert link is not None and link.event_id.startswith(LINK_PREFIX)
    assert (link.user_id, link.anonymous_id) == ("u1", "a1")
    assert link.event_time == converted.event.event_time  # type: ignore[union-attr]
    again = convert(call("page", userId="u1", anonymousId="a1", messageId="m-2")).link
    assert again is not None and again.event_id == link.event_id  # one link per pair


def test_identify_sets_traits_contact_place_and_time_zone_and_links_the_ids() -> None:
    converted = convert(
        call(
            "identify",
            userId="u1",
            anonymousId="a1",
            traits={
                "email": "ada@example.com",
                "phone": "+49 151 2345 6789",
                "plan": "premium",
                "address": {"city": "Berlin", "country": "DE"},
            },
            context={"timezone": "Europe/Berlin", "device": {"token": "push-1"}},
        )
    )
    assert converted.event is None and converted.link is None
    (request,) = converted.identifies
    assert (request.event_id, request.user_id, request.anonymous_id) == ("m-1", "u1", "a1")
    assert request.contact.email == "ada@example.com"
    assert request.contact.phone == "+4915123456789"
    assert request.contact.push_token == "push-1"
    assert set(request.traits) == {"plan", "address.city", "address.country"}
    assert (request.location.country, request.location.city) == ("DE", "Berlin")
    assert request.timezone == "Europe/Berlin"


def test_an_address_that_is_no_object_is_only_a_trait() -> None:
    (request,) = convert(call("identify", userId="u1", traits={"address": "Main St 1"})).identifies
    assert request.traits["address"].string_value == "Main St 1"
    assert not request.HasField("location")


def test_a_phone_that_is_not_e164_stays_a_trait() -> None:
    (request,) = convert(call("identify", userId="u1", traits={"phone": "06 12 34"})).identifies
    assert request.contact.phone == "" and request.traits["phone"].string_value == "06 12 34"


def test_alias_joins_the_previous_id_to_the_user() -> None:
    (request,) = convert(call("alias", userId="u1", previousId="a1")).identifies
    assert (request.user_id, request.anonymous_id, request.event_id) == ("u1", "a1", "m-1")
    with pytest.raises(FieldError) as missing:
        convert(call("alias", userId="u1"))
    assert missing.value.field == "previousId"


def test_group_becomes_traits_of_the_user() -> None:
    (request,) = convert(
        call("group", userId="u1", groupId=42, traits={"name": "Acme", "employees": 120})
    ).identifies
    assert request.traits["group_id"].string_value == "42"
    assert request.traits["group.name"].string_value == "Acme"
    assert request.traits["group.employees"].number_value == 120


def test_a_call_without_a_message_id_gets_one_from_its_content() -> None:
    source = {"type": "track", "userId": "u1", "event": "E"}
    first, second = convert(source).event, convert(dict(source)).event
    assert first is not None and second is not None
    assert first.event_id == second.event_id and first.event_id.startswith("seg-")
    assert convert(source | {"event": "F"}).event.event_id != first.event_id  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("source", "field", "reason"),
    [
        ({"type": "trak"}, "type", "is not a Segment call"),
        ({"type": 3}, "type", "must be a string, got a number"),
        (call("track", event="E"), "userId", "userId or anonymousId is required"),
        (call("track", userId="u"), "event", "is required"),
        (call("track", userId=["u"], event="E"), "userId", "must be a string, got a list"),
        (call("track", userId="u", event="E", timestamp="yesterday"), "timestamp", "ISO-8601"),
        (call("track", userId="u", event="E", properties=[1]), "properties", "must be an object"),
        (
            call("track", userId="u", event="E", context={"location": {"latitude": "north"}}),
            "context.location.latitude",
            "is not a number",
        ),
        (
            call(
                "track",
                userId="u",
                event="E",
                context={"location": {"latitude": 95, "longitude": 1}},
            ),
            "context.location.latitude",
            "between -90 and 90",
        ),
        (
            call("track", userId="u", event="E", context={"location": {"latitude": 5}}),
            "context.location.longitude",
            "is needed with context.location.latitude",
        ),
        (call("track", userId="u", event="E", context={"os": "iOS"}), "context.os", "object"),
        (call("group", userId="u"), "groupId", "is required"),
        (call("alias", previousId="a"), "userId", "is required"),
        (
            call("identify", userId="u", traits={"address": {"city": 7}}),
            "traits.address.city",
            "must be a string",
        ),
    ],
)
def test_a_wrong_field_is_named_by_its_source_path(
    source: dict[str, Any], field: str, reason: str
) -> None:
    assert_refused(convert, source, field, reason)
