"""Reads of the daily rollups behind AnalyticsService; each touches rows per day, not per user.

Each database of a partitioned deployment folds its own changes into its own rollups; a
read adds up every database's (users live in one partition, so their counts and flows
simply add; adapters/fanout.py)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any, TypeVar

from services.projector import rollup_schema as rs
from services.projector.adapters.fanout import Fanout, summed
from services.projector.adapters.history import tune
from services.projector.adapters.rollups import STATE_CODES, pairs_sql
from services.projector.adapters.store import ProjectorStore

T = TypeVar("T")
# Memory for the hash aggregate of flows outside the windows (one per user who changed).
FLOWS_WORK_MEM = "64MB"


def _cumulative(
    deltas: dict[int, dict[str, int]], start_day: int, end_day: int, before: dict[str, int]
) -> list[dict[str, int]]:
    """Per day of [start_day, end_day]: running totals, starting from `before`."""
    running = dict(before)
    out = []
    for day in range(start_day, end_day + 1):
        for key, delta in deltas.get(day, {}).items():
            running[key] = running.get(key, 0) + delta
        out.append(dict(running))
    return out


def _series(curs: Any, app_id: str, start_day: int, end_day: int) -> list[dict[str, int]]:
    curs.execute(
        "SELECT CASE WHEN day < %(start)s THEN -1 ELSE day END AS day, state,"
        f" sum(delta)::bigint AS delta FROM {rs.LIFECYCLE_DAILY_TABLE}"
        " WHERE app_id = %(app)s AND day <= %(end)s GROUP BY 1, 2",
        {"app": app_id, "start": start_day, "end": end_day},
    )
    before: dict[str, int] = {}
    deltas: dict[int, dict[str, int]] = defaultdict(dict)
    for row in curs.fetchall():
        state = STATE_CODES[row["state"]]
        if row["day"] == -1:
            before[state] = int(row["delta"])
        else:
            deltas[row["day"]][state] = int(row["delta"])
    return _cumulative(deltas, start_day, end_day, before)


class _DatabaseRollups:
    """The rollups of one database."""

    def __init__(self, store: ProjectorStore) -> None:
        self._store = store

    def position(self) -> int:
        with self._store.cursor() as curs:
            curs.execute(
                f"SELECT position FROM {rs.POSITION_TABLE} WHERE name = %s", (rs.FOLD_NAME,)
            )
            row = curs.fetchone()
            return int(row["position"]) if row else 0

    def _net(
        self, app_id: str, kind: str, start_day: int, end_day: int
    ) -> tuple[dict[str, int], dict[int, dict[str, int]]]:
        """Net users per value before start_day, and the net change per day after."""
        with self._store.cursor() as curs:
            curs.execute(
                "SELECT CASE WHEN day < %(start)s THEN -1 ELSE day END AS day, value,"
                " sum(delta)::bigint AS delta FROM ("
                f" SELECT day, to_value AS value, n AS delta FROM {rs.DAILY_MOVES_TABLE}"
                "  WHERE app_id = %(app)s AND kind = %(kind)s AND day <= %(end)s"
                " UNION ALL"
                f" SELECT day, from_value, -n FROM {rs.DAILY_MOVES_TABLE}"
                "  WHERE app_id = %(app)s AND kind = %(kind)s AND day <= %(end)s"
                ") m WHERE value <> '' GROUP BY 1, 2",
                {"app": app_id, "kind": kind, "start": start_day, "end": end_day},
            )
            before: dict[str, int] = {}
            deltas: dict[int, dict[str, int]] = defaultdict(dict)
            for row in curs.fetchall():
                if row["day"] == -1:
                    before[row["value"]] = int(row["delta"])
                else:
                    deltas[row["day"]][row["value"]] = int(row["delta"])
            return before, deltas

    def lifecycle_series(self, app_id: str, start_day: int, end_day: int) -> list[dict[str, int]]:
        """Users per lifecycle state at the end of each day of [start_day, end_day]."""
        with self._store.cursor() as curs:
            return _series(curs, app_id, start_day, end_day)

    def lifecycle_flows(
        self, app_id: str, start_day: int, end_day: int
    ) -> tuple[dict[tuple[str, str], int], dict[str, int], dict[str, int]]:
        """(state at the end of start_day, state at the end of end_day) -> users; and the
        users per state at both ends.

        Users without a change in between stayed where they were. Those who changed are
        counted from the flow windows the fold keeps (end_day the recorded clock's day,
        WINDOW_DAYS long), else from their per-day rows in between.
        """
        with self._store.datastore.transaction(commit=False) as curs:
            # One snapshot: the totals at both ends and the flows agree.
            curs.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            start = _series(curs, app_id, start_day, start_day)[0]
            end = _series(curs, app_id, end_day, end_day)[0]
            curs.execute(
                f"SELECT windows_day FROM {rs.POSITION_TABLE} WHERE name = %s", (rs.FOLD_NAME,)
            )
            at = curs.fetchone()
            days = end_day - start_day
            if at is not None and at["windows_day"] == end_day and days in rs.WINDOW_DAYS:
                curs.execute(
                    f"SELECT from_state AS f, to_state AS l, users AS n"
                    f" FROM {rs.LIFECYCLE_WINDOWS_TABLE} WHERE app_id = %s AND days = %s",
                    (app_id, days),
                )
            else:
                # One hash aggregate over the rows in between, read from the index.
                tune(curs, FLOWS_WORK_MEM)
                pairs = pairs_sql(
                    rs.LIFECYCLE_DAYS_TABLE, "app_id = %(app)s AND day > %(a)s AND day <= %(b)s"
                )
                curs.execute(
                    f"SELECT f, l, count(*) AS n FROM ({pairs}) p GROUP BY 1, 2",
                    {"app": app_id, "a": start_day, "b": end_day},
                )
            moved = [(STATE_CODES[r["f"]], STATE_CODES[r["l"]], int(r["n"])) for r in curs]
        flows: dict[tuple[str, str], int] = defaultdict(int)
        stayed = dict(start)
        for first, last, n in moved:
            if first:
                stayed[first] = stayed.get(first, 0) - n
            flows[(first, last)] += n
        for state, n in stayed.items():
            if n > 0:
                flows[(state, state)] += n
        return {k: v for k, v in flows.items() if v > 0 and k[1]}, start, end

    def rfm_groups(self, app_id: str) -> dict[str, int]:
        """Users per RFM group now (as far as the rollups have folded)."""
        before, _ = self._net(app_id, "rfm", 1 << 30, 1 << 30)
        return before

    def rfm_transitions(
        self, app_id: str, start_day: int, end_day: int
    ) -> list[tuple[str, str, int]]:
        with self._store.cursor() as curs:
            curs.execute(
                "SELECT from_value, to_value, sum(n)::bigint AS n"
                f" FROM {rs.DAILY_MOVES_TABLE} WHERE app_id = %s AND kind = 'rfm'"
                " AND day BETWEEN %s AND %s GROUP BY 1, 2 ORDER BY 3 DESC",
                (app_id, start_day, end_day),
            )
            return [(r["from_value"], r["to_value"], int(r["n"])) for r in curs.fetchall()]

    def segment_sizes(
        self, app_id: str, segment_ids: list[str], start_day: int, end_day: int
    ) -> dict[str, list[int]]:
        """Members of each segment at the end of each day of [start_day, end_day]."""
        with self._store.cursor() as curs:
            curs.execute(
                "SELECT segment_id, CASE WHEN day < %(start)s THEN -1 ELSE day END AS day,"
                f" sum(delta)::bigint AS delta FROM {rs.SEGMENT_DAILY_TABLE}"
                " WHERE app_id = %(app)s AND segment_id = ANY(%(ids)s) AND day <= %(end)s"
                " GROUP BY 1, 2",
                {"app": app_id, "ids": segment_ids, "start": start_day, "end": end_day},
            )
            rows: list[dict[str, Any]] = list(curs.fetchall())
        out = {}
        for segment_id in segment_ids:
            before = {"n": 0}
            deltas: dict[int, dict[str, int]] = defaultdict(dict)
            for row in rows:
                if row["segment_id"] != segment_id:
                    continue
                if row["day"] == -1:
                    before["n"] = int(row["delta"])
                else:
                    deltas[row["day"]]["n"] = int(row["delta"])
            out[segment_id] = [d["n"] for d in _cumulative(deltas, start_day, end_day, before)]
        return out


class RollupQueries:
    """The rollups of every database of the deployment, added up."""

    def __init__(self, stores: ProjectorStore | Fanout) -> None:
        self._fan = Fanout.of(stores)

    def _each(self, read: Callable[[_DatabaseRollups], T]) -> list[T]:
        return self._fan.each(lambda store: read(_DatabaseRollups(store)))

    def position(self) -> int:
        """The position the rollups of partition 0's database have folded through."""
        return _DatabaseRollups(self._fan.definitions).position()

    def lifecycle_series(self, app_id: str, start_day: int, end_day: int) -> list[dict[str, int]]:
        """Users per lifecycle state at the end of each day of [start_day, end_day]."""
        parts = self._each(lambda db: db.lifecycle_series(app_id, start_day, end_day))
        return [summed(days) for days in zip(*parts, strict=True)]

    def lifecycle_at(self, app_id: str, day: int) -> dict[str, int]:
        return self.lifecycle_series(app_id, day, day)[0]

    def lifecycle_flows(
        self, app_id: str, start_day: int, end_day: int
    ) -> tuple[dict[tuple[str, str], int], dict[str, int], dict[str, int]]:
        """(state at the end of start_day, state at the end of end_day) -> users; and the
        users per state at both ends (see `_DatabaseRollups.lifecycle_flows`)."""
        parts = self._each(lambda db: db.lifecycle_flows(app_id, start_day, end_day))
        if len(parts) == 1:
            return parts[0]
        return (
            summed(flows for flows, _, _ in parts),
            summed(start for _, start, _ in parts),
            summed(end for _, _, end in parts),
        )

    def rfm_groups(self, app_id: str) -> dict[str, int]:
        """Users per RFM group now (as far as the rollups have folded)."""
        return summed(self._each(lambda db: db.rfm_groups(app_id)))

    def rfm_transitions(
        self, app_id: str, start_day: int, end_day: int
    ) -> list[tuple[str, str, int]]:
        parts = self._each(lambda db: db.rfm_transitions(app_id, start_day, end_day))
        if len(parts) == 1:
            return parts[0]
        totals = summed({(f, t): n for f, t, n in part} for part in parts)
        return sorted(((f, t, n) for (f, t), n in totals.items()), key=lambda r: -r[2])

    def segment_sizes(
        self, app_id: str, segment_ids: list[str], start_day: int, end_day: int
    ) -> dict[str, list[int]]:
        """Members of each segment at the end of each day of [start_day, end_day]."""
        parts = self._each(lambda db: db.segment_sizes(app_id, segment_ids, start_day, end_day))
        return {
            segment_id: [sum(days) for days in zip(*(p[segment_id] for p in parts), strict=True)]
            for segment_id in segment_ids
        }
