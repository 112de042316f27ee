"""Translate ingest protos into drafts and outcomes into protos. No judgement here."""

from __future__ import annotations

from cohortflow.ingest.v1 import ingest_pb2
from cohortflow.types.v1 import types_pb2
from google.protobuf import timestamp_pb2

from services.ingest.domain.model import (
    Channel,
    ConsentDraft,
    ContextDraft,
    Coordinates,
    EventDraft,
    IdentifyDraft,
    Instant,
    InvalidValue,
    LocationDraft,
    Value,
    Violation,
)

_CHANNELS = {
    types_pb2.CHANNEL_IN_APP: Channel.IN_APP,
    types_pb2.CHANNEL_EMAIL: Channel.EMAIL,
    types_pb2.CHANNEL_PUSH: Channel.PUSH,
    types_pb2.CHANNEL_SMS: Channel.SMS,
    types_pb2.CHANNEL_WEBHOOK: Channel.WEBHOOK,
}
_CONSENT = {
    ingest_pb2.Consent.STATUS_GRANTED: True,
    ingest_pb2.Consent.STATUS_DENIED: False,
}
_NO_KIND = InvalidValue(
    "value has no kind: set string_value, number_value, bool_value, timestamp_value or list_value"
)
_NESTED = InvalidValue("lists cannot contain lists")


def timestamp_us(ts: timestamp_pb2.Timestamp) -> int:
    return ts.seconds * 1_000_000 + ts.nanos // 1000


def _scalar(value: types_pb2.Value) -> Value:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        return value.number_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "timestamp_value":
        return Instant(timestamp_us(value.timestamp_value))
    if kind == "list_value":
        return _NESTED
    return _NO_KIND


def value_from_proto(value: types_pb2.Value) -> Value:
    if value.WhichOneof("kind") == "list_value":
        return [_scalar(item) for item in value.list_value.values]  # type: ignore[misc]
    return _scalar(value)


def _values(values: object) -> dict[str, Value]:
    out: dict[str, Value] = {}
    for key, value in values.items():  # type: ignore[attr-defined]
        # Inlined common kinds: this runs for every property of every event.
        kind = value.WhichOneof("kind")
        if kind == "string_value":
            out[key] = value.string_value
        elif kind == "number_value":
            out[key] = value.number_value
        elif kind == "bool_value":
            out[key] = value.bool_value
        else:
            out[key] = value_from_proto(value)
    return out


_EMPTY_CONTEXT = ContextDraft()


def _coordinates(message: types_pb2.LatLng) -> Coordinates:
    return Coordinates(latitude=message.latitude, longitude=message.longitude)


def event_draft(event: ingest_pb2.Event) -> EventDraft:
    context = event.context
    return EventDraft(
        event_id=event.event_id,
        user_id=event.user_id,
        anonymous_id=event.anonymous_id,
        name=event.name,
        event_time_us=timestamp_us(event.event_time) if event.HasField("event_time") else None,
        properties=_values(event.properties),
        context=ContextDraft(
            platform=context.platform,
            os=context.os,
            app_version=context.app_version,
            locale=context.locale,
            timezone=context.timezone,
            country=context.country,
            city=context.city,
            location=_coordinates(context.location) if context.HasField("location") else None,
        )
        if event.HasField("context")
        else _EMPTY_CONTEXT,
    )


def identify_draft(request: ingest_pb2.IdentifyRequest) -> IdentifyDraft:
    location = None
    if request.HasField("location"):
        loc = request.location
        location = LocationDraft(
            country=loc.country,
            city=loc.city,
            coordinates=_coordinates(loc.coordinates) if loc.HasField("coordinates") else None,
        )
    return IdentifyDraft(
        event_id=request.event_id,
        user_id=request.user_id,
        anonymous_id=request.anonymous_id,
        event_time_us=timestamp_us(request.event_time) if request.HasField("event_time") else None,
        traits=_values(request.traits),
        email=request.contact.email,
        phone=request.contact.phone,
        push_token=request.contact.push_token,
        consents=[
            ConsentDraft(channel=_CHANNELS.get(c.channel), granted=_CONSENT.get(c.status))
            for c in request.consents
        ],
        timezone=request.timezone,
        location=location,
    )


def accepted(event_id: str, position: int, duplicate: bool) -> ingest_pb2.EventResult:
    return ingest_pb2.EventResult(
        event_id=event_id,
        status=ingest_pb2.EventResult.STATUS_DUPLICATE
        if duplicate
        else ingest_pb2.EventResult.STATUS_ACCEPTED,
        position=position,
    )


def rejected(event_id: str, violations: list[Violation]) -> ingest_pb2.EventResult:
    return ingest_pb2.EventResult(
        event_id=event_id,
        status=ingest_pb2.EventResult.STATUS_REJECTED,
        violations=[
            ingest_pb2.FieldViolation(field=v.field, description=v.description) for v in violations
        ],
    )
