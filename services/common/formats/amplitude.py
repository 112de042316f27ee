"""Amplitude's export lines (one event object per line of its export files) as ingest messages.

The shape of Amplitude's Export API (also its HTTP V2 API's event objects). `convert` is
pure; problems name their source path. What maps to what (README, CLI: formats):

  $insert_id (insert_id), else uuid -> event_id (neither: derived from the object)
  user_id -> user_id, device_id -> anonymous_id; an event with both links the device to
  the user
  event_time ("2026-01-02 03:04:05.678000", UTC), else client_event_time, else time
  (milliseconds) -> event_time
  event_type -> name; event_properties -> properties (flattened)
  country (a name or code) -> country, city, location_lat / location_lng -> location,
  platform -> platform (lower case), os_name + os_version -> os,
  version_name (app_version) -> app_version, language (a name or tag) -> locale
  $identify: user_properties ($set / $setOnce, or plain) -> traits (email, phone ->
  contact), with the same ids and place
Dropped: user_properties of other events (a snapshot Amplitude repeats on each event; the
$identify events carry the changes), the operations $add, $append, $prepend, $unset,
$remove, $preInsert, $postInsert, $clearAll, groups, group_properties, amplitude_id,
session_id, ip_address, device and carrier fields, region, dma, library, paying,
revenue fields outside event_properties, and Amplitude's processing times.
Not imported: $groupidentify (it sets properties of a group, not of a user).
"""

from __future__ import annotations

from typing import Any

from cohortflow.ingest.v1 import ingest_pb2
from google.protobuf import timestamp_pb2

from services.common.formats.fields import (
    Converted,
    FieldError,
    epoch_time,
    iso_time,
    joined,
    obj,
    text,
)
from services.common.formats.geo import country_code, language_tag, put_coordinates
from services.common.formats.identity import contact_from, derived_id, link
from services.common.formats.names import PAGE_VIEWED, SCREEN_VIEWED, event_name
from services.common.formats.values import Values, flatten
from services.eventlog.events import APP_INSTALLED, APP_OPENED, SESSION_STARTED

KNOWN_NAMES = {
    "[Amplitude] Page Viewed": PAGE_VIEWED,
    "[Amplitude] Screen Viewed": SCREEN_VIEWED,
    "[Amplitude] Application Installed": APP_INSTALLED,
    "[Amplitude] Application Opened": APP_OPENED,
    "[Amplitude] Start Session": SESSION_STARTED,
    "session_start": SESSION_STARTED,
}
_OPERATIONS = frozenset(
    {"$set", "$setOnce", "$add", "$append", "$prepend", "$unset", "$remove"}
    | {"$preInsert", "$postInsert", "$clearAll"}
)


def convert(source: dict[str, Any]) -> Converted:
    """The messages of one Amplitude event (a decoded JSON object)."""
    kind = text(source.get("event_type"), "event_type")
    user_id = text(source.get("user_id"), "user_id", numbers=True)
    device_id = text(source.get("device_id"), "device_id", numbers=True)
    if kind == "$groupidentify":
        raise FieldError(
            "event_type", "$groupidentify sets properties of a group, not a user; not imported"
        )
    if not user_id and not device_id:
        raise FieldError("user_id", "user_id or device_id is required")
    when = _time(source)
    event_id = _event_id(source)
    if kind == "$identify":
        traits = _user_properties(source.get("user_properties"))
        contact = contact_from(traits)
        request = ingest_pb2.IdentifyRequest(
            event_id=event_id,
            user_id=user_id,
            anonymous_id=device_id,
            traits=traits,
            contact=contact,
        )
        place = _location(source)
        if place != ingest_pb2.Location():
            request.location.CopyFrom(place)
        if when is not None:
            request.event_time.CopyFrom(when)
        return Converted(identifies=(request,))
    place = _location(source)
    event = ingest_pb2.Event(
        event_id=event_id,
        user_id=user_id,
        anonymous_id=device_id,
        name=event_name(kind, "event_type", KNOWN_NAMES),
        properties=flatten(source.get("event_properties"), "event_properties"),
        context=ingest_pb2.Context(
            platform=text(source.get("platform"), "platform").lower(),
            os=joined(
                text(source.get("os_name"), "os_name"),
                text(source.get("os_version"), "os_version", numbers=True),
            ),
            app_version=_app_version(source),
            locale=language_tag(text(source.get("language"), "language")),
            country=place.country,
            city=place.city,
        ),
    )
    if place.HasField("coordinates"):
        event.context.location.CopyFrom(place.coordinates)
    if when is not None:
        event.event_time.CopyFrom(when)
    return Converted(event=event, link=link(user_id, device_id, when))


def _event_id(source: dict[str, Any]) -> str:
    for field in ("$insert_id", "insert_id", "uuid"):
        found = text(source.get(field), field, numbers=True)
        if found:
            return found
    return derived_id("amp-", source)


def _time(source: dict[str, Any]) -> timestamp_pb2.Timestamp | None:
    for field in ("event_time", "client_event_time"):
        if source.get(field) is not None:
            return iso_time(source[field], field)
    return epoch_time(source["time"], "time") if source.get("time") is not None else None


def _app_version(source: dict[str, Any]) -> str:
    return text(source.get("version_name"), "version_name", numbers=True) or text(
        source.get("app_version"), "app_version", numbers=True
    )


def _location(source: dict[str, Any]) -> ingest_pb2.Location:
    out = ingest_pb2.Location(
        country=country_code(text(source.get("country"), "country")),
        city=text(source.get("city"), "city"),
    )
    paths = ("location_lat", "location_lng")
    put_coordinates(out.coordinates, source.get("location_lat"), source.get("location_lng"), paths)
    return out


def _user_properties(value: Any) -> Values:
    properties = obj(value, "user_properties")
    if not any(key in _OPERATIONS for key in properties):
        return flatten(properties, "user_properties")
    traits = flatten(properties.get("$set"), "user_properties.$set")
    for key, item in flatten(properties.get("$setOnce"), "user_properties.$setOnce").items():
        traits.setdefault(key, item)
    return traits
