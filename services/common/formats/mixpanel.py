"""Mixpanel's raw export lines (`{"event": ..., "properties": {...}}`) as ingest messages.

The same shape Mixpanel's /import takes. `convert` is pure; problems name their source
path. What maps to what (README, CLI: formats):

  properties.time (seconds, or milliseconds when that large) -> event_time
  event id: a hash of Mixpanel's own deduplication key (event, distinct_id, time,
  $insert_id), so what Mixpanel counts as one event is one event here; without
  $insert_id, a hash of the whole line
  $user_id, else distinct_id -> user_id (unless distinct_id is the device's: `$device:<id>`
  or equal to $device_id); $device_id (or the `$device:` id) -> anonymous_id; an event
  with both links the device to the user (Simplified ID Merge)
  $identify: $anon_id joined to $identified_id; $create_alias: distinct_id joined to alias
  $city -> city, mp_country_code -> country, $latitude / $longitude -> location,
  $os + $os_version -> os, $app_version_string (or $app_release) -> app_version,
  platform from $os (iOS, Android) or mp_lib "web"
  every other property (also $browser, $region, $current_url...) -> properties (flattened)
Not imported: $merge (it joins two ids that may both be users; cohortflow joins only an
anonymous id to a user) and, dropped from every event: token, mp_processing_time_ms,
$mp_api_endpoint, $mp_api_timestamp_ms, $import.
"""

from __future__ import annotations

from typing import Any

from cohortflow.ingest.v1 import ingest_pb2
from google.protobuf import timestamp_pb2

from services.common.formats.fields import Converted, FieldError, epoch_time, joined, obj, text
from services.common.formats.geo import country_code, put_coordinates
from services.common.formats.identity import derived_id, digest, link
from services.common.formats.names import PAGE_VIEWED, event_name
from services.common.formats.values import flatten
from services.eventlog.events import APP_INSTALLED

KNOWN_NAMES = {"$ae_first_open": APP_INSTALLED, "$mp_web_page_view": PAGE_VIEWED}
DEVICE_PREFIX = "$device:"
_IDS = ("time", "distinct_id", "$insert_id", "$device_id", "$user_id")
_INTERNAL = ("token", "mp_processing_time_ms", "$mp_api_endpoint", "$mp_api_timestamp_ms")
_CONTEXT = ("$city", "mp_country_code", "$latitude", "$longitude", "$os", "$os_version")
_VERSIONS = ("$app_version_string", "$app_release")
_SKIP = frozenset((*_IDS, *_INTERNAL, "$import", *_CONTEXT, *_VERSIONS))
_PLATFORMS = {"ios": "ios", "ipados": "ios", "iphone os": "ios", "android": "android"}


def convert(source: dict[str, Any]) -> Converted:
    """The messages of one Mixpanel event (a decoded JSON object)."""
    raw_name = text(source.get("event"), "event")
    props = obj(source.get("properties"), "properties")
    when = epoch_time(props["time"], "properties.time") if props.get("time") is not None else None
    distinct_id = text(props.get("distinct_id"), "properties.distinct_id", numbers=True)
    event_id = _event_id(source, raw_name, props, distinct_id)
    if raw_name == "$merge":
        raise FieldError(
            "event",
            "$merge joins two ids that may both be users; cohortflow joins only an"
            " anonymous id to a user, so it is not imported",
        )
    if raw_name in ("$identify", "$create_alias"):
        return Converted(identifies=(_identity(raw_name, props, distinct_id, event_id, when),))
    user_id, anonymous_id = _ids(props, distinct_id)
    event = ingest_pb2.Event(
        event_id=event_id,
        user_id=user_id,
        anonymous_id=anonymous_id,
        name=event_name(raw_name, "event", KNOWN_NAMES),
        properties=flatten(props, "properties", skip=_SKIP),
        context=_context(props),
    )
    if when is not None:
        event.event_time.CopyFrom(when)
    return Converted(event=event, link=link(user_id, anonymous_id, when))


def _event_id(source: dict[str, Any], name: str, props: dict[str, Any], distinct: str) -> str:
    insert_id = text(props.get("$insert_id"), "properties.$insert_id", numbers=True)
    if not insert_id:
        return derived_id("mp-", source)
    return "mp-" + digest(name, distinct, props.get("time"), insert_id)


def _ids(props: dict[str, Any], distinct_id: str) -> tuple[str, str]:
    user_id = text(props.get("$user_id"), "properties.$user_id", numbers=True)
    device_id = text(props.get("$device_id"), "properties.$device_id", numbers=True)
    if distinct_id.startswith(DEVICE_PREFIX):
        device_id = device_id or distinct_id.removeprefix(DEVICE_PREFIX)
    elif distinct_id and distinct_id != device_id:
        user_id = user_id or distinct_id
    if not user_id and not device_id:
        raise FieldError("properties.distinct_id", "is required (or $user_id or $device_id)")
    return user_id, device_id


def _identity(
    name: str,
    props: dict[str, Any],
    distinct_id: str,
    event_id: str,
    when: timestamp_pb2.Timestamp | None,
) -> ingest_pb2.IdentifyRequest:
    if name == "$identify":
        user_path, anonymous_path = "properties.$identified_id", "properties.$anon_id"
        user_id = text(props.get("$identified_id"), user_path, numbers=True) or distinct_id
        anonymous_id = text(props.get("$anon_id"), anonymous_path, numbers=True)
    else:
        user_path, anonymous_path = "properties.alias", "properties.distinct_id"
        user_id = text(props.get("alias"), user_path, numbers=True)
        anonymous_id = distinct_id
    if not user_id:
        raise FieldError(user_path, f"is required: the user {name} names")
    if not anonymous_id:
        raise FieldError(anonymous_path, f"is required: the id {name} joins to the user")
    request = ingest_pb2.IdentifyRequest(
        event_id=event_id, user_id=user_id, anonymous_id=anonymous_id
    )
    if when is not None:
        request.event_time.CopyFrom(when)
    return request


def _context(props: dict[str, Any]) -> ingest_pb2.Context:
    system = text(props.get("$os"), "properties.$os")
    version = text(props.get("$os_version"), "properties.$os_version", numbers=True)
    app_version = ""
    for key in _VERSIONS:
        app_version = app_version or text(props.get(key), f"properties.{key}", numbers=True)
    library = text(props.get("mp_lib"), "properties.mp_lib")
    out = ingest_pb2.Context(
        platform=_PLATFORMS.get(system.lower(), "web" if library == "web" else ""),
        os=joined(system, version),
        app_version=app_version,
        country=country_code(text(props.get("mp_country_code"), "properties.mp_country_code")),
        city=text(props.get("$city"), "properties.$city"),
    )
    paths = ("properties.$latitude", "properties.$longitude")
    put_coordinates(out.location, props.get("$latitude"), props.get("$longitude"), paths)
    return out
