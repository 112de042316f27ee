"""The analytics rollups against real PostgreSQL: folded incrementally, exactly once, equal to
counting the change rows directly, and refolded when the change table is replaced."""

from __future__ import annotations

import psycopg

from services.common.jetstream import ChangeSubjects
from services.projector.adapters.rollup_queries import RollupQueries
from services.projector.adapters.rollups import DAY_US, RollupFolder
from services.projector.adapters.store import open_store

DAY0 = 20_000  # a UTC day number


def _insert(url: str, rows: list[tuple[str, str, int, str, str, str, int, dict | None]]) -> None:
    with psycopg.connect(url) as conn:
        for app, user, seq, kind, old, new, day, details in rows:
            conn.execute(
                "INSERT INTO projector_changes (app_id, user_id, sequence, change_id, kind,"
                " from_value, to_value, cause, effective_us, recorded_us, position, details)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, 'event', %s, %s, %s, %s)",
                (
                    app,
                    user,
                    seq,
                    f"{app}-{user}-{seq}",
                    kind,
                    old,
                    new,
                    day * DAY_US + seq,
                    day * DAY_US,
                    day * 10 + seq,
                    psycopg.types.json.Jsonb(details or {}),
                ),
            )


def _changes() -> list[tuple[str, str, int, str, str, str, int, dict | None]]:
    return [
        ("a", "u1", 1, "lifecycle", "", "new", DAY0, None),
        ("a", "u2", 1, "lifecycle", "", "new", DAY0, None),
        ("a", "u1", 2, "lifecycle", "new", "active", DAY0 + 2, None),
        ("a", "u1", 3, "membership", "", "entered", DAY0 + 2, {"segment_id": "s"}),
        ("a", "u2", 2, "membership", "", "entered", DAY0 + 3, {"segment_id": "s"}),
        ("a", "u1", 4, "membership", "", "exited", DAY0 + 4, {"segment_id": "s"}),
        ("a", "u2", 3, "rfm", "", "champions", DAY0 + 1, None),
        ("a", "u2", 4, "rfm", "champions", "at_risk", DAY0 + 3, None),
        ("b", "u9", 1, "lifecycle", "", "new", DAY0, None),
    ]


def test_rollups_count_what_the_changes_say_per_app_and_day(database_url: str):
    store = open_store(database_url, ChangeSubjects("t"), pool_size=2)
    folder, queries = RollupFolder(store, batch=3), RollupQueries(store)
    _insert(database_url, _changes()[:4])
    assert folder.fold_all() == 4
    _insert(database_url, _changes()[4:])
    assert folder.fold_all() == 5
    assert folder.fold_all() == 0  # nothing folded twice

    series = queries.lifecycle_series("a", DAY0 - 1, DAY0 + 2)
    assert series == [{}, {"new": 2}, {"new": 2}, {"new": 1, "active": 1}]
    assert queries.lifecycle_series("b", DAY0, DAY0) == [{"new": 1}]
    assert queries.segment_sizes("a", ["s", "none"], DAY0 + 1, DAY0 + 4) == {
        "s": [0, 1, 2, 1],
        "none": [0, 0, 0, 0],
    }
    assert queries.rfm_groups("a") == {"champions": 0, "at_risk": 1}
    assert sorted(queries.rfm_transitions("a", DAY0, DAY0 + 5)) == [
        ("", "champions", 1),
        ("champions", "at_risk", 1),
    ]
    flows, start, end = queries.lifecycle_flows("a", DAY0 - 1, DAY0 + 2)
    assert start == {}
    assert flows == {("", "new"): 1, ("", "active"): 1}
    assert end == {"new": 1, "active": 1}
    flows, start, end = queries.lifecycle_flows("a", DAY0, DAY0 + 2)
    assert flows == {("new", "active"): 1, ("new", "new"): 1}
    assert start == {"new": 2} and end == {"new": 1, "active": 1}
    assert queries.position() == max(r[6] * 10 + r[2] for r in _changes())
    store.datastore.close()


def test_a_replaced_change_table_is_refolded_from_zero(database_url: str):
    store = open_store(database_url, ChangeSubjects("t"), pool_size=2)
    folder, queries = RollupFolder(store), RollupQueries(store)
    _insert(database_url, _changes())
    folder.fold_all()
    with psycopg.connect(database_url) as conn:
        # What a rebuild swap does: other rows (other ids) in place of the old ones.
        conn.execute("TRUNCATE projector_changes RESTART IDENTITY")
    _insert(database_url, _changes()[:2])
    folder.fold_all()
    assert queries.lifecycle_series("a", DAY0 + 5, DAY0 + 5) == [{"new": 2}]
    assert queries.segment_sizes("a", ["s"], DAY0 + 5, DAY0 + 5) == {"s": [0]}
    store.datastore.close()
