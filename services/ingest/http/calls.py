"""Segment calls as ingest's log events: the shared mapping, then ingest's own rules.

A call is converted by the Segment mapping (services.common.formats.segment) into the
messages the gRPC API takes, each judged and built exactly as the gRPC API does
(`check_event` / `check_identify`, `tracked_event` / `identified_event`). A call is
stored whole or not at all: when any of its messages breaks a rule, none is stored and
every problem is named by its path in the call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.common.formats.fields import FieldError, kind_of
from services.common.formats.segment import convert
from services.common.formats.segment_paths import source_path
from services.eventlog.events import EventTracked, UserIdentified
from services.ingest.domain.build import identified_event, tracked_event
from services.ingest.domain.model import Limits
from services.ingest.domain.validation import check_event, check_identify
from services.ingest.grpc.convert import event_draft, identify_draft

LogEvent = EventTracked | UserIdentified


@dataclass(frozen=True)
class Judged:
    """One Segment call: the log events it becomes (its own message first), or the
    problems that stop it, each (path in the call, why)."""

    message_id: str
    kind: str
    events: tuple[LogEvent, ...] = ()
    problems: tuple[tuple[str, str], ...] = ()


def judge(source: Any, app_id: str, now_us: int, limits: Limits) -> Judged:
    """What the call `source` (decoded JSON) becomes for `app_id`, received at `now_us`."""
    if not isinstance(source, dict):
        return Judged("", "", problems=(("", f"must be an object, got {kind_of(source)}"),))
    given_kind = source.get("type")
    kind = given_kind if isinstance(given_kind, str) else ""
    given_id = source.get("messageId")
    message_id = given_id if isinstance(given_id, str) else ""
    try:
        converted = convert(source)
    except FieldError as error:
        return Judged(message_id, kind, problems=((error.field, error.reason),))
    events: list[LogEvent] = []
    problems: dict[tuple[str, str], None] = {}  # ordered, without repeats (a link's ids)
    if converted.event is not None:
        draft = event_draft(converted.event)
        for violation in check_event(draft, now_us, limits):
            problems[source_path(source, violation.field), violation.description] = None
        events.append(tracked_event(app_id, draft, now_us))
    link = (converted.link,) if converted.link is not None else ()
    for request in (*converted.identifies, *link):
        found = identify_draft(request)
        for violation in check_identify(found, now_us, limits):
            problems[source_path(source, violation.field), violation.description] = None
        events.append(identified_event(app_id, found, now_us))
    message_id = events[0].event_id if events else message_id
    if problems:
        return Judged(message_id, kind, problems=tuple(problems))
    return Judged(message_id, kind, events=tuple(events))
