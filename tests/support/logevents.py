"""Build log events directly (no ingest) for projector tests, with chosen times."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from services.eventlog.events import (
    AppClockTicked,
    ClockTicked,
    EventTracked,
    HistoryImportFinished,
    HistoryImportStarted,
    UserIdentified,
    app_tick_uuid,
    event_uuid,
    history_marker_uuid,
    tick_uuid,
)
from services.ingest.domain.history_clock import IDENTIFY_RANK, TRACK_RANK, due_ticks

DAY = 86_400_000_000
HOUR = 3_600_000_000
MINUTE = 60_000_000
T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z

_ids = itertools.count(1)


def track(
    user: str,
    at: int,
    name: str = "App Opened",
    *,
    app: str = "app",
    received: int | None = None,
    anonymous_id: str = "",
    context: dict[str, Any] | None = None,
    **properties: Any,
) -> EventTracked:
    event_id = f"e{next(_ids)}"
    return EventTracked(
        originator_id=event_uuid(app, "track", event_id),
        originator_version=1,
        app_id=app,
        event_id=event_id,
        user_id=user,
        anonymous_id=anonymous_id,
        name=name,
        event_time_us=at,
        received_time_us=received if received is not None else at,
        properties={k: float(v) if isinstance(v, int) else v for k, v in properties.items()},
        context=context or {},
    )


def purchase(user: str, at: int, revenue: float, *, app: str = "app") -> EventTracked:
    return track(user, at, "Order Completed", app=app, revenue=revenue)


def identify(
    user: str, at: int, *, app: str = "app", anonymous_id: str = "", **fields: Any
) -> UserIdentified:
    event_id = f"i{next(_ids)}"
    return UserIdentified(
        originator_id=event_uuid(app, "identify", event_id),
        originator_version=1,
        app_id=app,
        event_id=event_id,
        user_id=user,
        anonymous_id=anonymous_id,
        event_time_us=at,
        received_time_us=at,
        **fields,
    )


def tick(at: int) -> ClockTicked:
    return ClockTicked(originator_id=tick_uuid(at), originator_version=1, tick_time_us=at)


def ticks(start: int, end: int, every: int = HOUR) -> list[ClockTicked]:
    """Ticks from start to end inclusive."""
    return [tick(t) for t in range(start, end + 1, every)]


def history(
    events: list[EventTracked | UserIdentified], job: str = "job-1", app: str = "app"
) -> list[object]:
    """`events` (of `app`) as a history import appends them to a log: Started, the events
    sorted by ingest's order with `history_job` set and the app's ticks by its tick rule
    between them, then Finished (services/ingest/domain/history_clock.py)."""
    ordered = sorted(
        events,
        key=lambda e: (
            e.event_time_us,
            IDENTIFY_RANK if isinstance(e, UserIdentified) else TRACK_RANK,
            e.originator_id,
        ),
    )
    out: list[object] = [
        HistoryImportStarted(
            originator_id=history_marker_uuid(app, HistoryImportStarted.KIND, job),
            originator_version=1,
            app_id=app,
            job_id=job,
            first_event_us=ordered[0].event_time_us,
        )
    ]
    for i, event in enumerate(ordered):
        out.append(dataclasses.replace(event, history_job=job))
        following = ordered[i + 1].event_time_us if i + 1 < len(ordered) else None
        if following is None or following > event.event_time_us:
            out.extend(app_tick(app, t) for t in due_ticks(event.event_time_us, following))
    out.append(
        HistoryImportFinished(
            originator_id=history_marker_uuid(app, HistoryImportFinished.KIND, job),
            originator_version=1,
            app_id=app,
            job_id=job,
            events=len(ordered),
        )
    )
    return out


def app_tick(app: str, at: int) -> AppClockTicked:
    return AppClockTicked(
        originator_id=app_tick_uuid(app, at), originator_version=1, app_id=app, tick_time_us=at
    )
