"""Simulated events and profile updates as IngestService requests."""

from __future__ import annotations

from cohortflow.ingest.v1 import ingest_pb2
from cohortflow.types.v1 import types_pb2
from google.protobuf import timestamp_pb2

from services.cli.simulator.model import US_PER_S, Place, Scalar, SimEvent, SimIdentify

CHANNELS = {
    "in_app": types_pb2.CHANNEL_IN_APP,
    "email": types_pb2.CHANNEL_EMAIL,
    "push": types_pb2.CHANNEL_PUSH,
    "sms": types_pb2.CHANNEL_SMS,
}
_GRANTED = {True: ingest_pb2.Consent.STATUS_GRANTED, False: ingest_pb2.Consent.STATUS_DENIED}


def _timestamp(us: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=us // US_PER_S, nanos=(us % US_PER_S) * 1000)


def _value(value: Scalar) -> types_pb2.Value:
    if isinstance(value, bool):
        return types_pb2.Value(bool_value=value)
    if isinstance(value, float | int):
        return types_pb2.Value(number_value=float(value))
    return types_pb2.Value(string_value=value)


def _context(place: Place) -> ingest_pb2.Context:
    return ingest_pb2.Context(
        platform=place.platform,
        os=place.os,
        app_version=place.app_version,
        locale=place.locale,
        timezone=place.timezone,
        country=place.country,
        city=place.city,
        location=types_pb2.LatLng(latitude=place.latitude, longitude=place.longitude),
    )


def event_pb(event: SimEvent) -> ingest_pb2.Event:
    return ingest_pb2.Event(
        event_id=event.event_id,
        user_id=event.user_id,
        name=event.name,
        event_time=_timestamp(event.time_us),
        properties={key: _value(value) for key, value in event.properties.items()},
        context=_context(event.place),
    )


def identify_pb(identify: SimIdentify) -> ingest_pb2.IdentifyRequest:
    return ingest_pb2.IdentifyRequest(
        event_id=identify.event_id,
        user_id=identify.user_id,
        event_time=_timestamp(identify.time_us),
        traits={key: _value(value) for key, value in identify.traits.items()},
        contact=ingest_pb2.Contact(
            email=identify.email, phone=identify.phone, push_token=identify.push_token
        ),
        consents=[
            ingest_pb2.Consent(channel=CHANNELS[channel], status=_GRANTED[granted])
            for channel, granted in sorted(identify.consents.items())
        ],
        timezone=identify.timezone,
        location=ingest_pb2.Location(
            country=identify.country,
            city=identify.city,
            coordinates=types_pb2.LatLng(latitude=identify.latitude, longitude=identify.longitude),
        ),
    )
