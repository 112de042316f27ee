"""Ingest's message fields named as the Segment call they came from."""

from __future__ import annotations

import pytest

from services.common.formats.segment_paths import source_path

TRACK = {"type": "track", "originalTimestamp": "2026-01-01T00:00:00Z"}
IDENTIFY = {"type": "identify", "traits": {"address": {"city": "Berlin"}}}


@pytest.mark.parametrize(
    ("source", "field", "path"),
    [
        (TRACK, "event_id", "messageId"),
        (TRACK, "name", "event"),
        (TRACK, "event_time", "originalTimestamp"),
        ({"type": "track"}, "event_time", "timestamp"),
        (TRACK, 'properties["price"]', "properties.price"),
        (TRACK, 'properties["address.city"]', "properties.address.city"),
        (TRACK, 'properties["tags"][2]', "properties.tags[2]"),
        (TRACK, 'properties["Plan Type"]', 'properties["Plan Type"]'),
        (TRACK, "context.platform", "context.device.type"),
        (TRACK, "context.app_version", "context.app.version"),
        (TRACK, "context.location.latitude", "context.location.latitude"),
        (IDENTIFY, "contact.email", "traits.email"),
        (IDENTIFY, "contact.push_token", "context.device.token"),
        (IDENTIFY, "location.city", "traits.address.city"),
        (IDENTIFY, "location.country", "context.location.country"),
        (IDENTIFY, "location.coordinates.longitude", "context.location.longitude"),
        (IDENTIFY, "timezone", "context.timezone"),
        ({"type": "alias"}, "anonymous_id", "previousId"),
        ({"type": "group"}, 'traits["group_id"]', "groupId"),
        ({"type": "group"}, 'traits["group.seats"]', "traits.seats"),
    ],
)
def test_a_message_field_is_named_by_its_place_in_the_call(
    source: dict[str, object], field: str, path: str
) -> None:
    assert source_path(source, field) == path
