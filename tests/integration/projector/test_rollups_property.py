"""The lifecycle rollups equal an independent computation over random change histories.

Histories hold what the projector really writes: changes out of effective-time order
(a correction dated before the change it corrects, a late event's change), several on
one day, users seen on different days. They are inserted and folded in random
batches, the recorded clock moving on between them (so the flow windows are kept up
by folds and computed again at new days). After every fold: users per state at the
end of each day equal GetLifecycleSummary's as-of count (ProfileQueries), and the flows
between any two days equal each user's state at both ends, counted directly; from the
windows and from the rows alike. A user's state at a time is that of their latest
change made (by sequence) that took effect by then: a correction replaces the change it
corrects even though it is dated before it.
"""

from __future__ import annotations

import itertools
from collections import Counter

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.jetstream import ChangeSubjects
from services.eventlog.vocabulary import LIFECYCLE_STATES as LIFECYCLE
from services.projector import rollup_schema as rs
from services.projector.adapters.queries import ProfileQueries
from services.projector.adapters.rollup_queries import RollupQueries
from services.projector.adapters.rollups import DAY_US, RollupFolder
from services.projector.adapters.store import open_store

DAY0 = 20_400
DAYS = 12
STATES = ("", *LIFECYCLE)
HOUR_US = 3_600_000_000

# One change: (user, day offset, hour, state). Users' sequences follow the order drawn.
change = st.tuples(
    st.sampled_from(["u1", "u2", "u3", "u4", "u5"]),
    st.integers(0, DAYS - 1),
    st.integers(0, 23),
    st.sampled_from(STATES),  # "" too: a state cleared
)
step = st.tuples(
    st.lists(change, min_size=1, max_size=8),  # changes committed together
    st.integers(0, 3),  # days the recorded clock moves on before the fold
)


class History:
    def __init__(self, url: str, app: str) -> None:
        self.url, self.app = url, app
        self.sequence: Counter[str] = Counter()
        self.rows: list[tuple[str, int, int, str]] = []  # user, effective_us, sequence, to

    def add(self, changes: list[tuple[str, int, int, str]]) -> None:
        with psycopg.connect(self.url) as conn:
            for user, day, hour, to in changes:
                self.sequence[user] += 1
                seq = self.sequence[user]
                effective = (DAY0 + day) * DAY_US + hour * HOUR_US
                self.rows.append((user, effective, seq, to))
                conn.execute(
                    "INSERT INTO projector_changes (app_id, user_id, sequence, change_id, kind,"
                    " from_value, to_value, cause, effective_us, recorded_us, position)"
                    " VALUES (%s, %s, %s, %s, 'lifecycle', '', %s, 'event', %s, %s, %s)",
                    (self.app, user, seq, f"{self.app}-{user}-{seq}", to, effective, effective,
                     len(self.rows)),
                )  # fmt: skip

    def state(self, user: str, day: int) -> str:
        """The user's state at the end of DAY0 + day: of their latest change made (by
        sequence) that took effect by then."""
        mine = [(s, to) for u, e, s, to in self.rows if u == user and e < (DAY0 + day + 1) * DAY_US]
        return max(mine)[1] if mine else ""

    def users(self) -> set[str]:
        return {u for u, *_ in self.rows}


def set_clock(url: str, day: int) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO projector_meta (name, value) VALUES ('now_us', %s)"
            " ON CONFLICT (partition, name) DO UPDATE SET value = excluded.value",
            ((DAY0 + day) * DAY_US + HOUR_US,),
        )


def check(history: History, rollups: RollupQueries, profiles: ProfileQueries) -> None:
    series = rollups.lifecycle_series(history.app, DAY0, DAY0 + DAYS)
    for day, counts in enumerate(series):
        expected = profiles.lifecycle_counts(history.app, (DAY0 + day + 1) * DAY_US - 1)
        assert {s: n for s, n in counts.items() if n} == expected, day
    for a, b in itertools.combinations(range(DAYS + 1), 2):
        flows, start, end = rollups.lifecycle_flows(history.app, DAY0 + a, DAY0 + b)
        pairs = Counter((history.state(u, a), history.state(u, b)) for u in history.users())
        assert flows == {k: n for k, n in pairs.items() if k[1]}, (a, b)
        assert sum(start.values()) == sum(n for (f, _), n in pairs.items() if f)
        assert {s: n for s, n in end.items() if n} == {
            s: sum(n for (_, t), n in pairs.items() if t == s) for s in {t for _, t in pairs} if s
        }


@pytest.fixture(scope="module")
def stores(postgres):
    from services.migrate import migrate

    url = postgres.create_database()
    migrate(url)
    store = open_store(url, ChangeSubjects("t"), pool_size=2)
    yield url, store
    store.datastore.close()
    postgres.drop_database(url)


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(step, min_size=1, max_size=5), batch=st.sampled_from([1, 3, 1000]))
def test_lifecycle_counts_and_flows_equal_the_as_of_definition(stores, steps, batch) -> None:
    url, store = stores
    history = History(url, f"app{next(_apps)}")
    folder = RollupFolder(store, batch=batch)
    rollups, profiles = RollupQueries(store), ProfileQueries(store)
    clock = 0
    for changes, days in steps:
        history.add(changes)
        clock = min(clock + days, DAYS)
        set_clock(url, clock)
        folder.fold_all()
        check(history, rollups, profiles)
    # The windows were used (they end at the clock's day) and agree with the rows.
    with psycopg.connect(url) as conn:
        row = conn.execute(
            f"SELECT windows_day FROM {rs.POSITION_TABLE} WHERE name = %s", (rs.FOLD_NAME,)
        ).fetchone()
    assert row is not None and row[0] == DAY0 + clock


_apps = itertools.count()
