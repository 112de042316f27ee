"""What a simulation sends and what the log stored, to prove nothing was lost or doubled."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from services.cli.simulator import SimulationConfig
from services.cli.simulator.behaviour import simulate
from tests.support.eventlog import stored_events


def simulated_ids(config: SimulationConfig, now: datetime) -> set[str]:
    """Every event id (events and Identify calls) the simulation sends when run at `now`."""
    window = config.window(now)
    ids: set[str] = set()
    for emission in simulate(
        config.seed, config.users, window, config.behaviour, config.id_prefix(window)
    ):
        if emission.identify is not None:
            ids.add(emission.identify.event_id)
        ids.update(e.event_id for e in emission.events)
    return ids


def stored_id_counts(database_url: str) -> Counter[str]:
    """event id -> how many times the log holds it (clock ticks and definitions left out)."""
    return Counter(
        event_id for e in stored_events(database_url) if (event_id := getattr(e, "event_id", ""))
    )
