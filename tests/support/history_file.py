"""A simulated history as an import file: the simulator's population over a period that
ends before now, written as cohortflow JSON lines for `cohortflow import --history`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from services.cli.simulator import SimulationConfig
from services.cli.simulator.behaviour import simulate
from services.cli.simulator.model import US_PER_S, Kind, SimEvent


def _line(event: SimEvent) -> bytes:
    place = event.place
    return orjson.dumps(
        {
            "event_id": event.event_id,
            "user_id": event.user_id,
            "name": event.name,
            "event_time": datetime.fromtimestamp(event.time_us / US_PER_S, UTC).isoformat(),
            "properties": event.properties,
            "context": {
                "platform": place.platform,
                "os": place.os,
                "app_version": place.app_version,
                "locale": place.locale,
                "timezone": place.timezone,
                "country": place.country,
                "city": place.city,
                "latitude": place.latitude,
                "longitude": place.longitude,
            },
        }
    )


def write_simulated_history(
    path: Path, users: int, days: float, seed: int = 1, *, ended_days_ago: float = 1
) -> int:
    """Write the events of `users` simulated users over `days` days ending `ended_days_ago`
    days before now (each event once: the simulator's resent batches are left out); the
    number of lines written."""
    now = datetime.now(UTC)
    start = now - timedelta(days=days + ended_days_ago)
    config = SimulationConfig(users=users, days=days, seed=seed, start=start)
    window = config.window(now)
    written = 0
    with path.open("wb") as out:
        for emission in simulate(
            config.seed, config.users, window, config.behaviour, config.id_prefix(window)
        ):
            if emission.kind is Kind.RETRY:
                continue
            for event in emission.events:
                out.write(_line(event) + b"\n")
                written += 1
    return written
