"""RFM of a partitioned deployment: cut points over every partition's purchasers, recorded
in the log, so each purchaser's scores are those of one fold of the whole log."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson
import psycopg

from services.eventlog.partitioned import PartitionedLog
from services.projector.config import Policies
from services.projector.domain.engine import Engine
from services.projector.domain.user import User
from tests.support.logevents import DAY, HOUR, T0, purchase, tick, track
from tests.support.partitioned import route, wait_folded
from tests.support.projector import in_process_projector


def purchases(users: int, seed: int) -> list[object]:
    rng = random.Random(seed)
    events: list[object] = [tick(T0)]
    for day in range(30):
        for user in range(users):
            if rng.random() < 0.15:
                at = T0 + day * DAY + rng.randrange(HOUR)
                events.append(track(f"buyer-{user}", at))
                events.append(purchase(f"buyer-{user}", at + 1, round(rng.uniform(5, 300), 2)))
        events.append(tick(T0 + (day + 1) * DAY))
    return events


def scores(url: str) -> dict[str, tuple[str, list[int]]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT user_id, rfm_group, state FROM projector_profiles WHERE app_id = 'app'"
        ).fetchall()
    return {
        user: (group, User.unpack(orjson.loads(state)).rfm_scores) for user, group, state in rows
    }


async def test_every_purchaser_is_scored_against_every_partitions_purchasers(
    partitioned: tuple[str, PartitionedLog], nats_server: Any
) -> None:
    url, log = partitioned
    events = purchases(60, seed=5)
    reference = Engine(Policies())
    reference.apply_all((e, n) for n, e in enumerate(events, 1))
    expected = {
        key[1]: (user.rfm_group, user.rfm_scores)
        for key, user in reference.users.items()
        if user.rfm_scores
    }
    assert len({tuple(p) for _g, p in expected.values()}) > 5  # the scores spread
    route(log, events)
    async with in_process_projector(url, nats_server.url):
        await wait_folded(log)
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            found = {u: s for u, s in (await asyncio.to_thread(scores, url)).items() if s[1]}
            if found == expected:
                break
            assert asyncio.get_running_loop().time() < deadline, (
                f"{sum(found.get(u) != s for u, s in expected.items())} of {len(expected)}"
                " purchasers scored otherwise"
            )
            await asyncio.sleep(0.3)
        with psycopg.connect(url) as conn:
            recorded = conn.execute(
                "SELECT count(*) FROM cohortflow_p0_events WHERE topic LIKE %s",
                ("%:RfmCutPointsRecorded",),
            ).fetchone()
    assert recorded and recorded[0] >= 1
