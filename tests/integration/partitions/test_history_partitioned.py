"""History mode in a partitioned deployment: the import's markers and the app's ticks are
in every partition's log, so each partition folds its users' history by the app's clock;
lifecycle ends, and changes, as one fold of the whole log would give."""

from __future__ import annotations

from typing import Any

import psycopg

from services.eventlog.partitioned import PartitionedLog
from services.projector.config import Policies
from services.projector.domain.engine import Engine
from tests.support.history_sim import simulated
from tests.support.logevents import DAY, MINUTE, T0, history, tick, track
from tests.support.partitioned import route, wait_folded
from tests.support.projector import in_process_projector


def _lifecycle(url: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with psycopg.connect(url) as conn:
        profiles = conn.execute(
            "SELECT user_id, lifecycle_state, lifecycle_since, event_count"
            " FROM projector_profiles WHERE app_id = 'app' ORDER BY user_id"
        ).fetchall()
        changes = conn.execute(
            "SELECT user_id, from_value, to_value, effective_us FROM projector_changes"
            " WHERE app_id = 'app' AND kind = 'lifecycle'"
        ).fetchall()
    return profiles, sorted(changes)


async def test_each_partition_folds_its_share_of_a_history_by_the_apps_clock(
    partitioned: tuple[str, PartitionedLog], nats_server: Any
) -> None:
    url, log = partitioned
    now = T0 + 70 * DAY
    imported = history(simulated("app", seed=5, users=40, days=60), job="job-p", app="app")
    live = track("newcomer", now + MINUTE, app="app")  # parked until Finished, in its partition
    events = [tick(now), *imported[:-1], live, imported[-1], tick(now + 40 * DAY)]
    route(log, events)
    async with in_process_projector(url, nats_server.url):
        await wait_folded(log)
    engine = Engine(Policies())
    engine.apply_all((event, position) for position, event in enumerate(events, 1))
    expected = [c for c in engine.drain().changes if c.kind == "lifecycle"]
    profiles, changes = _lifecycle(url)
    assert [(p[0], p[1], p[3]) for p in profiles] == [
        (user.user_id, user.state, user.event_count) for _, user in sorted(engine.users.items())
    ]
    assert changes == sorted(
        (c.user_id, c.from_value, c.to_value, c.effective_us) for c in expected
    )
    assert len({c[2] for c in changes}) >= 4  # new, active, dormant, churned at least
    # By the app's clock: months behind the recorded clock, yet every state moved.
    assert sum(c[3] < now - 30 * DAY for c in changes) > 50
    # The parked live event folded after the history, at its own time.
    assert [c for c in changes if c[3] == now + MINUTE] == [("newcomer", "", "new", now + MINUTE)]
