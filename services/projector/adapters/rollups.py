"""Daily rollups of the change history, folded incrementally (a background job).

`RollupFolder.fold_once` reads the change rows after the last one folded (by id,
the commit order of the one projector that writes them), adds them to the daily
tables and moves its position, all in one transaction: a crash neither loses nor
repeats a change. If the change table was replaced (a rebuild swapped in), the
row it stopped at is gone or different, and the rollups are refolded from zero.

Lifecycle states are dated the way as-of queries date them: a user's state at the
end of a day is that of their latest change (by sequence, the order they were made)
that took effect by then. A correction is dated before the change it corrects
(churned -> dormant at day 24 after churned at day 30), so summing changes in order
of effective time would count such a user twice; instead, every user a batch
touches has their per-day rows (`analytics_lifecycle_days`) computed again from
all their changes, and the daily counts and flow windows move by the difference.
"""

from __future__ import annotations

import threading
from typing import Any

import structlog

from services.eventlog.vocabulary import LIFECYCLE_STATES
from services.projector import rollup_schema as rs
from services.projector import schema
from services.projector.adapters.store import ProjectorStore

DAY_US = 86_400_000_000
# The digit of each lifecycle state in the lifecycle rollups (0: none); stored, so it
# follows the vocabulary's stored order.
STATE_CODES = ("", *LIFECYCLE_STATES)
# Flows are packed as day * 8 + state, so min/max over a user's days pick the first
# day's state before and the last day's state after.
_PACK = 8
_log = structlog.get_logger("rollups")


def state_code(column: str) -> str:
    """SQL: the digit of the lifecycle state in `column` (0 for none)."""
    whens = " ".join(f"WHEN '{state}' THEN {n}" for n, state in enumerate(STATE_CODES) if state)
    return f"(CASE {column} {whens} ELSE 0 END)"


def pairs_sql(rows: str, window: str) -> str:
    """SQL (for a parameterised query): per user of `rows` (app_id, user_id, day,
    prev_state, last_state) within `window` (a condition on `day`), the state before
    the user's first day there and after their last."""
    return (
        f"SELECT app_id, user_id, min(day::bigint * {_PACK} + prev_state) %% {_PACK} AS f,"
        f" max(day::bigint * {_PACK} + last_state) %% {_PACK} AS l"
        f" FROM {rows} WHERE {window} GROUP BY app_id, user_id"
    )


_FOLD = f"""
WITH batch AS MATERIALIZED (
    SELECT id, app_id, user_id, sequence, kind, from_value, to_value, effective_us, position,
           change_id, details
    FROM {schema.CHANGES_TABLE} WHERE id > %(last)s ORDER BY id LIMIT %(limit)s
), moves AS (
    INSERT INTO {rs.DAILY_MOVES_TABLE} (app_id, kind, day, from_value, to_value, n)
    SELECT app_id, kind, (effective_us / {DAY_US})::int, from_value, to_value, count(*)
    FROM batch WHERE kind IN ('lifecycle', 'rfm') GROUP BY 1, 2, 3, 4, 5
    ON CONFLICT (app_id, kind, day, from_value, to_value)
    DO UPDATE SET n = {rs.DAILY_MOVES_TABLE}.n + excluded.n
), sizes AS (
    INSERT INTO {rs.SEGMENT_DAILY_TABLE} (app_id, segment_id, day, delta)
    SELECT app_id, details->>'segment_id', (effective_us / {DAY_US})::int,
           sum(CASE WHEN to_value = 'entered' THEN 1 ELSE -1 END)
    FROM batch WHERE kind = 'membership' GROUP BY 1, 2, 3
    ON CONFLICT (app_id, segment_id, day)
    DO UPDATE SET delta = {rs.SEGMENT_DAILY_TABLE}.delta + excluded.delta
)
SELECT count(*) AS n, max(id) AS last_id, max(position) AS position,
       (SELECT change_id FROM batch ORDER BY id DESC LIMIT 1) AS last_change_id,
       count(*) FILTER (WHERE kind = 'lifecycle') AS lifecycle
FROM batch
"""

# The users with lifecycle changes in (last, upto], their per-day rows from all their
# changes up to `upto`; the old rows (this statement's snapshot) are subtracted from the
# daily counts and the windows, the new ones added. Days only ever gain rows (changes
# are never deleted), so an upsert replaces the old rows.
_WINDOWS_VALUES = ", ".join(f"({n})" for n in rs.WINDOW_DAYS)
_LIFECYCLE = f"""
WITH touched AS MATERIALIZED (
    SELECT DISTINCT app_id, user_id FROM {schema.CHANGES_TABLE}
    WHERE id > %(last)s AND id <= %(upto)s AND kind = 'lifecycle'
), fresh AS MATERIALIZED (
    SELECT app_id, user_id, day,
           coalesce(lag(last_state) OVER (PARTITION BY app_id, user_id ORDER BY day), 0)::smallint
           AS prev_state, last_state
    FROM (
        -- The state at the end of each day: of the latest change made (by sequence) that
        -- took effect by then, so a correction replaces the change it corrects.
        SELECT app_id, user_id, day, (max(latest) OVER (PARTITION BY app_id, user_id
               ORDER BY day ROWS UNBOUNDED PRECEDING) %% {_PACK})::smallint AS last_state
        FROM (
            SELECT c.app_id, c.user_id, (c.effective_us / {DAY_US})::int AS day,
                   max(c.sequence * {_PACK} + {state_code("c.to_value")}) AS latest
            FROM {schema.CHANGES_TABLE} c JOIN touched t USING (app_id, user_id)
            WHERE c.kind = 'lifecycle' AND c.id <= %(upto)s
            GROUP BY 1, 2, 3
        ) per_day
    ) running
), old AS MATERIALIZED (
    SELECT d.app_id, d.user_id, d.day, d.prev_state, d.last_state
    FROM {rs.LIFECYCLE_DAYS_TABLE} d JOIN touched t USING (app_id, user_id)
), rows AS (
    INSERT INTO {rs.LIFECYCLE_DAYS_TABLE} (app_id, user_id, day, prev_state, last_state)
    SELECT * FROM fresh
    ON CONFLICT (app_id, user_id, day) DO UPDATE
    SET prev_state = excluded.prev_state, last_state = excluded.last_state
    WHERE ({rs.LIFECYCLE_DAYS_TABLE}.prev_state, {rs.LIFECYCLE_DAYS_TABLE}.last_state)
          IS DISTINCT FROM (excluded.prev_state, excluded.last_state)
), daily AS (
    INSERT INTO {rs.LIFECYCLE_DAILY_TABLE} (app_id, day, state, delta)
    SELECT app_id, day, state, sum(n) FROM (
        SELECT app_id, day, last_state AS state, 1 AS n FROM fresh
        UNION ALL SELECT app_id, day, prev_state, -1 FROM fresh
        UNION ALL SELECT app_id, day, last_state, -1 FROM old
        UNION ALL SELECT app_id, day, prev_state, 1 FROM old
    ) m WHERE state <> 0 GROUP BY 1, 2, 3 HAVING sum(n) <> 0
    ON CONFLICT (app_id, day, state)
    DO UPDATE SET delta = {rs.LIFECYCLE_DAILY_TABLE}.delta + excluded.delta
), windows AS (
    INSERT INTO {rs.LIFECYCLE_WINDOWS_TABLE} (app_id, days, from_state, to_state, users)
    SELECT app_id, days, f, l, sum(sign) FROM (
        SELECT p.app_id, w.days, p.f, p.l, 1 AS sign
        FROM (VALUES {_WINDOWS_VALUES}) w(days), LATERAL (
            {pairs_sql("fresh", "day > %(end)s - w.days AND day <= %(end)s")}) p
        UNION ALL
        SELECT p.app_id, w.days, p.f, p.l, -1
        FROM (VALUES {_WINDOWS_VALUES}) w(days), LATERAL (
            {pairs_sql("old", "day > %(end)s - w.days AND day <= %(end)s")}) p
    ) s WHERE %(windowed)s GROUP BY 1, 2, 3, 4 HAVING sum(sign) <> 0
    ON CONFLICT (app_id, days, from_state, to_state)
    DO UPDATE SET users = {rs.LIFECYCLE_WINDOWS_TABLE}.users + excluded.users
)
SELECT count(*) AS users FROM touched
"""

# One app's windows ending at the end of day %(end)s, from the per-day rows.
_APP_PAIRS = pairs_sql(
    rs.LIFECYCLE_DAYS_TABLE, "app_id = %(app)s AND day > %(end)s - w.days AND day <= %(end)s"
)
_WINDOWS = f"""
INSERT INTO {rs.LIFECYCLE_WINDOWS_TABLE} (app_id, days, from_state, to_state, users)
SELECT %(app)s, w.days, p.f, p.l, count(*)
FROM (VALUES {_WINDOWS_VALUES}) w(days), LATERAL ({_APP_PAIRS}) p
GROUP BY 2, 3, 4
"""


class RollupFolder:
    """Folds new change rows into the daily rollups, `batch` rows per transaction."""

    def __init__(self, store: ProjectorStore, *, batch: int = 50_000, poll_s: float = 1.0):
        self._store = store
        self._batch = batch
        self._poll_s = poll_s

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                folded = self.fold_once()
            except Exception as error:  # the database may be away: try again next round
                _log.warning("rollup fold failed", error=repr(error))
                folded = 0
            if folded < self._batch:
                stop.wait(self._poll_s)

    def fold_all(self) -> int:
        """Fold until nothing is left; the number of change rows folded."""
        total = 0
        while True:
            n = self.fold_once()
            total += n
            if n < self._batch:
                return total

    def fold_once(self) -> int:
        with self._store.datastore.transaction(commit=True) as curs:
            curs.execute(
                f"SELECT last_id, last_change_id, windows_day FROM {rs.POSITION_TABLE}"
                " WHERE name = %s FOR UPDATE",
                (rs.FOLD_NAME,),
            )
            at = curs.fetchone()
            if at is None:
                return 0
            last, windows_day = int(at["last_id"]), int(at["windows_day"])
            if last and not self._still_there(curs, last, at["last_change_id"]):
                _log.warning("the change table was replaced; refolding the rollups")
                last = 0
            if last == 0:
                curs.execute(f"TRUNCATE {', '.join(rs.TABLES)}")
                windows_day = -1
            clock_day = self._clock_day(curs)
            curs.execute(_FOLD, {"last": last, "limit": self._batch})
            row = curs.fetchone()
            n = int(row["n"]) if row else 0
            if row is not None and n:
                if int(row["lifecycle"]):
                    curs.execute(
                        _LIFECYCLE,
                        {
                            "last": last,
                            "upto": row["last_id"],
                            "end": windows_day,
                            "windowed": windows_day >= 0 and windows_day == clock_day,
                        },
                    )
                curs.execute(
                    f"UPDATE {rs.POSITION_TABLE} SET last_id = %s, last_change_id = %s,"
                    " position = greatest(position, %s) WHERE name = %s",
                    (row["last_id"], row["last_change_id"], row["position"], rs.FOLD_NAME),
                )
            elif last == 0:
                curs.execute(
                    f"UPDATE {rs.POSITION_TABLE} SET last_id = 0, last_change_id = '',"
                    " position = 0, windows_day = -1 WHERE name = %s",
                    (rs.FOLD_NAME,),
                )
            if n < self._batch and clock_day is not None and clock_day != windows_day:
                self._windows(curs, clock_day)
            return n

    @staticmethod
    def _clock_day(curs: Any) -> int | None:
        """The UTC day of the projector's recorded clock (None before its first tick)."""
        # The newest clock of the partitions (one partition: its clock).
        curs.execute(f"SELECT max(value) AS value FROM {schema.META_TABLE} WHERE name = 'now_us'")
        row = curs.fetchone()
        return int(row["value"]) // DAY_US if row and row["value"] is not None else None

    @staticmethod
    def _windows(curs: Any, end_day: int) -> None:
        """Every app's flow windows computed afresh, ending at the end of `end_day`."""
        curs.execute(f"DELETE FROM {rs.LIFECYCLE_WINDOWS_TABLE}")
        curs.execute(f"SELECT DISTINCT app_id FROM {rs.LIFECYCLE_DAILY_TABLE}")
        for app in [r["app_id"] for r in curs.fetchall()]:
            curs.execute(_WINDOWS, {"app": app, "end": end_day})
        curs.execute(
            f"UPDATE {rs.POSITION_TABLE} SET windows_day = %s WHERE name = %s",
            (end_day, rs.FOLD_NAME),
        )

    @staticmethod
    def _still_there(curs: Any, last: int, change_id: str) -> bool:
        curs.execute(f"SELECT change_id FROM {schema.CHANGES_TABLE} WHERE id = %s", (last,))
        row = curs.fetchone()
        return row is not None and row["change_id"] == change_id
