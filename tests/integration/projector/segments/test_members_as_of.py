"""Members now and as of a date (GetSegment, ListSegments, ListSegmentMembers with and
without as_of_time): the sizes from the daily rollups and the pages read in user order
equal the definition, over histories the projector really folds (events late and on time,
windows, deadlines, segments defined midway and built from history), now, at every day's
end and at times within days."""

from __future__ import annotations

import random
from typing import Any

import psycopg
import pytest

from services.common.grpc.auth import ApiKeys
from services.projector.adapters.history_queries import HistoryQueries
from services.projector.adapters.segment_queries import SegmentQueries
from tests.support.logevents import DAY, HOUR, MINUTE, T0, tick, track
from tests.support.projector import in_process_projector
from tests.support.segment_history import SEGMENTS, save_segments, wait_settled

# The members at a time, by definition: whose latest change of the segment up to it
# (by effective time, then sequence) is an entry.
DEFINITION = """
SELECT user_id FROM (
    SELECT DISTINCT ON (user_id) user_id, to_value FROM projector_changes
    WHERE app_id = 'app' AND kind = 'membership' AND details->>'segment_id' = %s
      AND effective_us <= %s ORDER BY user_id, effective_us DESC, sequence DESC
) l WHERE to_value = 'entered'
"""


def days_of_history(seed: int) -> list[object]:
    """Events of eight users over about ten days; a tenth of them hours late."""
    rng = random.Random(seed)
    now = T0
    out: list[object] = [tick(now)]
    for _ in range(500):
        if rng.random() < 0.1:
            now += rng.choice([20 * MINUTE, HOUR, 3 * HOUR, 7 * HOUR])
            out.append(tick(now))
            continue
        when = now - (rng.choice([2, 9, 30]) * HOUR if rng.random() < 0.1 else 0)
        props: dict[str, Any] = {"v": float(rng.randrange(11)), "k": rng.choice("xyz")}
        user = rng.choice([f"u{i}" for i in range(8)])
        out.append(track(user, when, rng.choice("ABC"), context={"country": "DE"}, **props))
    return out


@pytest.mark.parametrize("seed", [21, 22])
async def test_members_as_of_equal_the_definition_at_day_ends_and_within_days(
    database_url: str, nats_server: Any, seed: int
) -> None:
    events = days_of_history(seed)
    split = len(events) // 3
    async with in_process_projector(
        database_url, nats_server.url, ApiKeys([("app", "key-app")])
    ) as running:
        app, log = running.app, running.log
        log.append_new([log.encode(e) for e in events[:split]])
        save_segments(log, SEGMENTS)  # built from history, then live
        log.append_new([log.encode(e) for e in events[split:]])
        await wait_settled(app, log, len(SEGMENTS))
        queries = HistoryQueries(app.store)
        last = max(getattr(e, "event_time_us", T0) for e in events)
        day_ends = [T0 + (n + 1) * DAY - 1 for n in range((last - T0) // DAY + 2)]
        within = [T0 + n * DAY + 13 * HOUR + 7 for n in range((last - T0) // DAY + 1)]
        members = 0
        now = SegmentQueries(app.store)
        with psycopg.connect(database_url) as conn:
            for segment_id in SEGMENTS:
                # Members now, from the rollups: the rows of segment_members.
                (count,) = conn.execute(
                    "SELECT count(*) FROM segment_members WHERE segment_id = %s", (segment_id,)
                ).fetchone()
                assert now.segment("app", segment_id)["size"] == count, segment_id
                assert now.members("app", segment_id, "", 1)[1] == count, segment_id
                listed = {s["segment_id"]: s["size"] for s in now.segments("app", "", 100, True)}
                assert listed[segment_id] == count, segment_id
                for at in day_ends + within:
                    expected = {r[0] for r in conn.execute(DEFINITION, (segment_id, at))}
                    seen: list[str] = []
                    after = ""
                    while True:  # pages of two, in user order
                        rows, total = queries.members_as_of("app", segment_id, at, after, 2)
                        assert total == len(expected), (segment_id, at)
                        seen += [r["user_id"] for r in rows]
                        if len(rows) < 2:
                            break
                        after = rows[-1]["user_id"]
                    assert seen == sorted(expected), (segment_id, at)
                    members += len(seen)
    assert len(day_ends) >= 5 and members > 50
