"""Where in a Segment call a field of the ingest message it became came from.

Ingest's rules name the fields of its messages (`event_id`, `properties["price"]`,
`contact.email`); a Segment client knows its own (`messageId`, `properties.price`,
`traits.email`). `source_path` turns the one into the other for the mapping in
`segment`, so a refusal over HTTP names what the client sent.
"""

from __future__ import annotations

import json
import re
from typing import Any

from services.common.formats.fields import child
from services.common.formats.segment import TIMES

_KEYED = re.compile(r'(properties|traits)\[("(?:[^"\\]|\\.)*")\](.*)', re.DOTALL)
_SAME = {
    "event_id": "messageId",
    "user_id": "userId",
    "anonymous_id": "anonymousId",
    "name": "event",
    # Track, page, screen
    "context.platform": "context.device.type",
    "context.os": "context.os.name",
    "context.app_version": "context.app.version",
    "context.country": "context.location.country",
    "context.city": "context.location.city",
    # Identify, group, alias
    "contact.email": "traits.email",
    "contact.phone": "traits.phone",
    "contact.push_token": "context.device.token",
    "timezone": "context.timezone",
    "location.coordinates.latitude": "context.location.latitude",
    "location.coordinates.longitude": "context.location.longitude",
}


def source_path(source: dict[str, Any], field: str) -> str:
    """The path in the Segment call `source` of the message field `field`."""
    kind = source.get("type")
    keyed = _KEYED.fullmatch(field)
    if keyed:
        where, key, rest = keyed.group(1), json.loads(keyed.group(2)), keyed.group(3)
        if kind == "group":
            if key == "group_id":
                return "groupId"
            key = key.removeprefix("group.")
        # Nested objects were flattened into dotted keys: name them as nested again.
        path = where
        for part in key.split("."):
            path = child(path, part)
        return path + rest
    if field == "event_time":
        return next((name for name in TIMES if source.get(name) is not None), "timestamp")
    if field == "anonymous_id" and kind == "alias":
        return "previousId"
    if field in ("location.country", "location.city"):
        address = source.get("traits", {}).get("address") if _has_traits(source) else None
        name = field.rpartition(".")[2]
        if isinstance(address, dict) and address.get(name):
            return f"traits.address.{name}"
        return f"context.location.{name}"
    return _SAME.get(field, field)


def _has_traits(source: dict[str, Any]) -> bool:
    return isinstance(source.get("traits"), dict)
