"""Segment's JSON spec as ingest messages: track, page, screen, identify, alias, group.

One object per line, as Segment's archives and replays deliver them. `convert` is pure
(no I/O), so the CLI import and a Segment-compatible HTTP endpoint share it; every
problem names its source path. What maps to what (README, CLI: formats):

  messageId -> event_id (none: derived from the object); userId, anonymousId -> ids
  timestamp | originalTimestamp | sentAt | receivedAt (the first given) -> event_time
  track: event -> name; page / screen: "Page Viewed" / "Screen Viewed", with `name` and
  `category` among the properties; properties -> properties (flattened, see values)
  context.campaign.* -> utm_* properties; context.device.type (or the library) -> platform;
  context.os.name + version -> os; context.app.version -> app_version; context.locale,
  context.timezone; context.location.country (name or code) / city / latitude / longitude
  identify: traits -> traits (email, phone -> contact), traits.address and
  context.location -> location, context.timezone -> timezone, context.device.token ->
  contact.push_token
  alias: previousId joined to userId (an Identify with both ids)
  group: groupId -> trait group_id, the group's traits -> traits group.<key>
  A track/page/screen with both userId and anonymousId also links the two.
Dropped: context.ip, userAgent, page, screen, network, traits (on events), library,
device ids and model, integrations, _metadata, writeKey, version, channel, consent.
"""

from __future__ import annotations

from typing import Any

from cohortflow.ingest.v1 import ingest_pb2
from google.protobuf import timestamp_pb2

from services.common.formats.fields import Converted, FieldError, iso_time, joined, obj, text
from services.common.formats.geo import country_code, put_coordinates
from services.common.formats.identity import contact_from, derived_id, link
from services.common.formats.names import PAGE_VIEWED, SCREEN_VIEWED, event_name
from services.common.formats.values import Values, add_absent, flatten, scalar
from services.eventlog.events import APP_INSTALLED, APP_OPENED, APP_UNINSTALLED

TYPES = ("track", "page", "screen", "identify", "alias", "group")
KNOWN_NAMES = {
    "Application Installed": APP_INSTALLED,
    "Application Opened": APP_OPENED,
    "Application Uninstalled": APP_UNINSTALLED,
}
TIMES = ("timestamp", "originalTimestamp", "sentAt", "receivedAt")
_LIBRARY_PLATFORMS = {
    "analytics.js": "web",
    "analytics-next": "web",
    "analytics-ios": "ios",
    "analytics-swift": "ios",
    "analytics-android": "android",
    "analytics-kotlin": "android",
}
_CAMPAIGN = ("name", "source", "medium", "term", "content")
_POINT = ("context.location.latitude", "context.location.longitude")


def convert(source: dict[str, Any]) -> Converted:
    """The messages of one Segment call (a decoded JSON object)."""
    kind = text(source.get("type"), "type")
    if kind not in TYPES:
        raise FieldError("type", f"{kind[:40]!r} is not a Segment call; expected one of {TYPES}")
    user_id = text(source.get("userId"), "userId", numbers=True)
    anonymous_id = text(source.get("anonymousId"), "anonymousId", numbers=True)
    when = _time(source)
    context = obj(source.get("context"), "context")
    event_id = text(source.get("messageId"), "messageId", numbers=True)
    if kind == "alias":
        return Converted(identifies=(_alias(source, user_id, event_id, when),))
    if not user_id and not anonymous_id:
        raise FieldError("userId", "userId or anonymousId is required")
    if kind in ("identify", "group"):
        request = _identify(source, kind, context)
        request.event_id = event_id or derived_id("seg-", source)
        request.user_id, request.anonymous_id = user_id, anonymous_id
        if when is not None:
            request.event_time.CopyFrom(when)
        return Converted(identifies=(request,))
    event = ingest_pb2.Event(
        user_id=user_id,
        anonymous_id=anonymous_id,
        name=_name(kind, source),
        properties=_properties(kind, source, context),
        context=_context(context),
    )
    event.event_id = event_id or derived_id("seg-", source)
    if when is not None:
        event.event_time.CopyFrom(when)
    return Converted(event=event, link=link(user_id, anonymous_id, when))


def _time(source: dict[str, Any]) -> timestamp_pb2.Timestamp | None:
    for field in TIMES:
        if source.get(field) is not None:
            return iso_time(source[field], field)
    return None


def _name(kind: str, source: dict[str, Any]) -> str:
    if kind == "page":
        return PAGE_VIEWED
    if kind == "screen":
        return SCREEN_VIEWED
    return event_name(text(source.get("event"), "event"), "event", KNOWN_NAMES)


def _properties(kind: str, source: dict[str, Any], context: dict[str, Any]) -> Values:
    properties = flatten(source.get("properties"), "properties")
    if kind in ("page", "screen"):
        for field in ("name", "category"):
            if source.get(field) is not None:
                properties.setdefault(field, scalar(text(source[field], field), field))
    campaign = obj(context.get("campaign"), "context.campaign")
    utm = {f"utm_{'campaign' if k == 'name' else k}": campaign.get(k) for k in _CAMPAIGN}
    add_absent(properties, flatten(utm, "context.campaign"))
    return properties


def _context(context: dict[str, Any]) -> ingest_pb2.Context:
    device = obj(context.get("device"), "context.device")
    system = obj(context.get("os"), "context.os")
    app = obj(context.get("app"), "context.app")
    library = obj(context.get("library"), "context.library")
    out = ingest_pb2.Context(
        platform=text(device.get("type"), "context.device.type").lower()
        or _LIBRARY_PLATFORMS.get(text(library.get("name"), "context.library.name"), ""),
        os=joined(
            text(system.get("name"), "context.os.name"),
            text(system.get("version"), "context.os.version", numbers=True),
        ),
        app_version=text(app.get("version"), "context.app.version", numbers=True),
        locale=text(context.get("locale"), "context.locale"),
        timezone=text(context.get("timezone"), "context.timezone"),
    )
    location = obj(context.get("location"), "context.location")
    out.country = country_code(text(location.get("country"), "context.location.country"))
    out.city = text(location.get("city"), "context.location.city")
    put_coordinates(out.location, location.get("latitude"), location.get("longitude"), _POINT)
    return out


def _alias(
    source: dict[str, Any], user_id: str, event_id: str, when: timestamp_pb2.Timestamp | None
) -> ingest_pb2.IdentifyRequest:
    previous = text(source.get("previousId"), "previousId", numbers=True)
    if not previous:
        raise FieldError("previousId", "is required: the id that becomes userId")
    if not user_id:
        raise FieldError("userId", "is required: the user previousId becomes")
    request = ingest_pb2.IdentifyRequest(
        event_id=event_id or derived_id("seg-", source), user_id=user_id, anonymous_id=previous
    )
    if when is not None:
        request.event_time.CopyFrom(when)
    return request


def _identify(
    source: dict[str, Any], kind: str, context: dict[str, Any]
) -> ingest_pb2.IdentifyRequest:
    if kind == "group":
        group_id = text(source.get("groupId"), "groupId", numbers=True)
        if not group_id:
            raise FieldError("groupId", "is required: the group the user belongs to")
        traits = flatten(source.get("traits"), "traits", prefix="group.")
        traits["group_id"] = scalar(group_id, "groupId")
        return ingest_pb2.IdentifyRequest(traits=traits)
    traits = flatten(source.get("traits"), "traits")
    device = obj(context.get("device"), "context.device")
    contact = contact_from(traits)
    contact.push_token = text(device.get("token"), "context.device.token")
    request = ingest_pb2.IdentifyRequest(
        traits=traits,
        contact=contact,
        timezone=text(context.get("timezone"), "context.timezone"),
    )
    address = obj(source.get("traits"), "traits").get("address")
    if not isinstance(address, dict):
        address = {}  # a street as text: a trait only
    location = obj(context.get("location"), "context.location")
    # What the user gave (traits.address) over where they were seen (context.location);
    # both are read, so a bad one is named even when the other wins.
    countries = [text(address.get("country"), "traits.address.country")]
    countries.append(text(location.get("country"), "context.location.country"))
    cities = [text(address.get("city"), "traits.address.city")]
    cities.append(text(location.get("city"), "context.location.city"))
    request.location.country = country_code(next(filter(None, countries), ""))
    request.location.city = next(filter(None, cities), "")
    put_coordinates(
        request.location.coordinates, location.get("latitude"), location.get("longitude"), _POINT
    )
    if request.location == ingest_pb2.Location():
        request.ClearField("location")
    return request
