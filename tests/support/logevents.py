"""Build log events directly (no ingest) for projector tests, with chosen times."""

from __future__ import annotations

import itertools
from typing import Any

from services.eventlog.events import (
    ClockTicked,
    EventTracked,
    UserIdentified,
    event_uuid,
    tick_uuid,
)

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
