"""A build stores exactly the rows the Python fold of compute_states would have stored.

SegmentBuilder computes and writes the tracker states server-side (INSERT ... SELECT,
one tracker after the other merged into each user's row). Before, compute_states
fetched them and the builder copied `orjson.dumps(states)` back. Both must give the
same jsonb, to the last digit, for every kind of tracker and several trackers at once.
"""

from __future__ import annotations

import random
from typing import Any

import orjson
import psycopg
import pytest

from services.common.jetstream import ChangeSubjects
from services.common.segments.definition import parse
from services.eventlog.store import open_event_log
from services.projector import schema
from services.projector.adapters.builds import SegmentBuilder
from services.projector.adapters.history import compute_states
from services.projector.adapters.preview import members_query
from services.projector.adapters.store import open_store
from services.projector.domain.changeset import TICK_FACT
from services.projector.domain.segments.compile import compile_segment
from tests.support.logevents import MINUTE, T0
from tests.support.segments import Definitions

VALUES: list[Any] = [0, 1, 2.5, 0.1, 0.2, 1e-7, 123456789.125, -3, 1e15, 7.0, "7", None, True]

DEFINITIONS: dict[str, dict[str, Any]] = {
    "win-count": {"events": {"name": "A", "window": "3h", "op": ">=", "value": 2}},
    "win-sum": {
        "events": {
            "name": "A",
            "window": "2h",
            "aggregate": "sum",
            "property": "v",
            "op": ">",
            "value": 1,
            "where": [{"property": "context.country", "op": "=", "value": "DE"}],
        }
    },
    "total-avg-time": {
        "events": {"name": "B", "aggregate": "avg", "property": "ts", "op": ">", "value": 0}
    },
    "total-max": {
        "events": {"name": "B", "aggregate": "max", "property": "v", "op": "<", "value": 5}
    },
    "lapsed": {"recency": {"name": "C", "more_than": "1h"}},
    "abandoned": {"inaction": {"did": "A", "not_did": "B", "within": "30m"}},
    "several": {
        "any": [
            {
                "events": {
                    "name": "A",
                    "window": "1h",
                    "aggregate": "min",
                    "property": "v",
                    "op": "<=",
                    "value": 1,
                }
            },
            {"events": {"name": "C", "aggregate": "sum", "property": "v", "op": ">=", "value": 2}},
            {"recency": {"name": "B", "less_than": "2h"}},
            {
                "inaction": {
                    "did": "C",
                    "not_did": "A",
                    "within": "1h",
                    "where": [{"property": "k", "op": "in", "values": ["x", "y"]}],
                }
            },
            {"none": [{"events": {"name": "A", "op": "<", "value": 3}}]},
        ]
    },
}


def _facts(seed: int) -> list[tuple[Any, ...]]:
    rng = random.Random(seed)
    rows: list[tuple[Any, ...]] = []
    for position in range(1, 600):
        when = T0 + rng.randrange(0, 300) * MINUTE
        props: dict[str, Any] = {"v": rng.choice(VALUES), "k": rng.choice("xyz")}
        if rng.random() < 0.5:
            props["$times"] = {"ts": when - rng.randrange(0, 240) * MINUTE}
        props["$context"] = {"country": rng.choice(["DE", "FR"])}
        user = f"u{rng.randrange(40)}"
        rows.append(("app", user, rng.choice("ABC"), when, position, orjson.dumps(props).decode()))
    return rows


@pytest.mark.parametrize("seed", [1, 2])
def test_stored_rows_equal_the_python_fold(database_url: str, seed: int) -> None:
    facts = _facts(seed)
    through = 500  # facts after it are not part of the build
    clock = T0 + 200 * MINUTE
    with psycopg.connect(database_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO {schema.FACTS_TABLE} VALUES (%s, %s, %s, %s, %s, %s::jsonb)", facts
        )
        cur.execute(
            f"INSERT INTO {schema.FACTS_TABLE} VALUES ('', '', %s, %s, %s, '{{}}')",
            (TICK_FACT, clock, through - 1),
        )
        cur.execute(
            f"INSERT INTO {schema.FACTS_TABLE} VALUES ('', '', %s, %s, %s, '{{}}')",
            (TICK_FACT, clock + 500 * MINUTE, through + 1),
        )
    log = open_event_log(database_url, pool_size=1)
    store = open_store(database_url, ChangeSubjects("test.changes"), pool_size=2)
    builder = SegmentBuilder(store, log, lambda: through)
    definitions = Definitions("app")
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            for segment_id, definition in DEFINITIONS.items():
                log.append_new([log.encode(e) for e in definitions.define(segment_id, definition)])
                builder.build("app", segment_id, 1, through, definition)
                compiled = compile_segment(segment_id, 1, parse(definition))
                specs = [compiled.trackers[k] for k in sorted(compiled.trackers)]
                with conn.cursor() as cur:
                    expected = compute_states(cur, "app", specs, through)
                    # What the builder stored before: orjson's text of each user's dict.
                    cur.execute(
                        "SELECT k, v::jsonb::text FROM jsonb_each_text(%s::jsonb) AS e (k, v)",
                        (
                            orjson.dumps(
                                {u: orjson.dumps(s).decode() for u, s in expected.items()}
                            ).decode(),
                        ),
                    )
                    want = dict(cur.fetchall())
                    cur.execute(
                        f"SELECT user_id, states::text FROM {schema.SEGMENT_BUILDS_TABLE}"
                        " WHERE app_id = 'app' AND segment_id = %s AND version = 1",
                        (segment_id,),
                    )
                    got = dict(cur.fetchall())
                    cur.execute(
                        f"SELECT status, users FROM {schema.SEGMENT_BUILD_PROGRESS_TABLE}"
                        " WHERE app_id = 'app' AND segment_id = %s",
                        (segment_id,),
                    )
                    progress = cur.fetchone()
                assert got == want, segment_id
                assert len(got) > 5, segment_id
                assert progress == ("stored", len(want)), segment_id
                if len(specs) > 1:
                    assert any(len(orjson.loads(s)) > 1 for s in got.values()), segment_id
    finally:
        log.close()
        store.datastore.close()


def test_preview_from_a_required_tracker_keeps_users_without_profiles_out(
    database_url: str,
) -> None:
    """Starting from a tracker's users, only those with a profile in the app are members."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO {schema.FACTS_TABLE} VALUES"
            " ('app', 'u1', 'A', 1, 1, '{}'), ('app', 'ghost', 'A', 2, 2, '{}'),"
            " ('other', 'u2', 'A', 3, 3, '{}')"
        )
        conn.execute(
            f"INSERT INTO {schema.PROFILES_TABLE} (app_id, user_id) VALUES"
            " ('app', 'u1'), ('app', 'u2'), ('other', 'ghost')"
        )
        cases = {
            "a": {"events": {"name": "A", "op": ">=", "value": 1}},
            "few": {"events": {"name": "A", "op": "<", "value": 1}},
            "either": {
                "any": [
                    {"events": {"name": "A", "op": ">=", "value": 1}},
                    {"recency": {"name": "A", "less_than": "1h"}},
                ]
            },
        }
        found = {
            name: sorted(r[0] for r in conn.execute(members_query("app", parse(d), 10, 5)))
            for name, d in cases.items()
        }
    assert found == {"a": ["u1"], "few": ["u2"], "either": ["u1"]}
