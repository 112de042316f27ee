"""Turn validated drafts into log events (the stored, JSON-native form)."""

from __future__ import annotations

from typing import Any

from services.eventlog.events import EventTracked, StoredValue, UserIdentified, event_uuid
from services.ingest.domain.model import (
    ContextDraft,
    EventDraft,
    IdentifyDraft,
    Instant,
    Value,
)


def split_values(
    values: dict[str, Value],
) -> tuple[dict[str, StoredValue], dict[str, int | list[int]]]:
    """Plain values and timestamp values apart, so each keeps its type in JSON."""
    plain: dict[str, Any] = {}
    times: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Instant):
            times[key] = value.us
        elif isinstance(value, list) and value and isinstance(value[0], Instant):
            times[key] = [item.us for item in value if isinstance(item, Instant)]
        elif isinstance(value, float | int) and not isinstance(value, bool):
            plain[key] = float(value)
        elif isinstance(value, list) and value and _is_number(value[0]):
            plain[key] = [float(item) for item in value]  # type: ignore[arg-type]
        else:
            plain[key] = value
    return plain, times


def _is_number(value: object) -> bool:
    return isinstance(value, float | int) and not isinstance(value, bool)


def _context(context: ContextDraft) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("platform", "os", "app_version", "locale", "timezone", "city"):
        value = getattr(context, name)
        if value:
            out[name] = value
    if context.country:
        out["country"] = context.country.upper()
    if context.location is not None:
        out["latitude"] = float(context.location.latitude)
        out["longitude"] = float(context.location.longitude)
    return out


def tracked_event(
    app_id: str, draft: EventDraft, received_us: int, *, history_job: str = ""
) -> EventTracked:
    properties, time_properties = split_values(draft.properties)
    return EventTracked(
        originator_id=event_uuid(app_id, EventTracked.KIND, draft.event_id),
        originator_version=1,
        app_id=app_id,
        event_id=draft.event_id,
        user_id=draft.user_id,
        anonymous_id=draft.anonymous_id,
        name=draft.name,
        event_time_us=draft.event_time_us if draft.event_time_us is not None else received_us,
        received_time_us=received_us,
        properties=properties,
        time_properties=time_properties,
        context=_context(draft.context),
        history_job=history_job,
    )


def identified_event(
    app_id: str, draft: IdentifyDraft, received_us: int, *, history_job: str = ""
) -> UserIdentified:
    traits, time_traits = split_values(draft.traits)
    contact = {
        name: value
        for name, value in (
            ("email", draft.email),
            ("phone", draft.phone),
            ("push_token", draft.push_token),
        )
        if value
    }
    consents = {c.channel.value: bool(c.granted) for c in draft.consents if c.channel is not None}
    location: dict[str, Any] = {}
    if draft.location is not None:
        if draft.location.country:
            location["country"] = draft.location.country.upper()
        if draft.location.city:
            location["city"] = draft.location.city
        if draft.location.coordinates is not None:
            location["latitude"] = float(draft.location.coordinates.latitude)
            location["longitude"] = float(draft.location.coordinates.longitude)
    return UserIdentified(
        originator_id=event_uuid(app_id, UserIdentified.KIND, draft.event_id),
        originator_version=1,
        app_id=app_id,
        event_id=draft.event_id,
        user_id=draft.user_id,
        anonymous_id=draft.anonymous_id,
        event_time_us=draft.event_time_us if draft.event_time_us is not None else received_us,
        received_time_us=received_us,
        traits=traits,
        time_traits=time_traits,
        contact=contact,
        consents=consents,
        timezone=draft.timezone,
        location=location,
        history_job=history_job,
    )
