"""Daily rollups of the change history, folded incrementally (a background job).

`RollupFolder.fold_once` reads the change rows after the last one folded (by id,
the commit order of the one projector that writes them), adds them to the daily
tables and moves its position, all in one transaction: a crash neither loses nor
repeats a change. If the change table was replaced (a rebuild swapped in), the
row it stopped at is gone or different, and the rollups are refolded from zero.
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
# The digit of each lifecycle state in the keys of the lifecycle moves (0: none); stored,
# so it follows the vocabulary's stored order.
STATE_CODES = ("", *LIFECYCLE_STATES)
_log = structlog.get_logger("rollups")


def state_code(column: str) -> str:
    """SQL: the digit of the lifecycle state in `column` (0 for none)."""
    whens = " ".join(f"WHEN '{state}' THEN {n}" for n, state in enumerate(STATE_CODES) if state)
    return f"(CASE {column} {whens} ELSE 0 END)"


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
), lifecycle AS (
    INSERT INTO {rs.LIFECYCLE_MOVES_TABLE} (app_id, day, user_key, first_key, last_key)
    SELECT app_id, (effective_us / {DAY_US})::int, hashtextextended(user_id, 0),
           min(effective_us * 1000 + (sequence %% 100) * 10 + {state_code("from_value")}),
           max(effective_us * 1000 + (sequence %% 100) * 10 + {state_code("to_value")})
    FROM batch WHERE kind = 'lifecycle' GROUP BY 1, 2, 3
    ON CONFLICT (app_id, day, user_key) DO UPDATE SET
        first_key = least({rs.LIFECYCLE_MOVES_TABLE}.first_key, excluded.first_key),
        last_key = greatest({rs.LIFECYCLE_MOVES_TABLE}.last_key, excluded.last_key)
)
SELECT count(*) AS n, max(id) AS last_id, max(position) AS position,
       (SELECT change_id FROM batch ORDER BY id DESC LIMIT 1) AS last_change_id
FROM batch
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
                f"SELECT last_id, last_change_id FROM {rs.POSITION_TABLE}"
                " WHERE name = 'changes' FOR UPDATE"
            )
            at = curs.fetchone()
            if at is None:
                return 0
            last = int(at["last_id"])
            if last and not self._still_there(curs, last, at["last_change_id"]):
                _log.warning("the change table was replaced; refolding the rollups")
                curs.execute(f"TRUNCATE {', '.join(rs.TABLES)}")
                last = 0
            curs.execute(_FOLD, {"last": last, "limit": self._batch})
            row = curs.fetchone()
            n = int(row["n"]) if row else 0
            if row is not None and n:
                curs.execute(
                    f"UPDATE {rs.POSITION_TABLE} SET last_id = %s, last_change_id = %s,"
                    " position = greatest(position, %s) WHERE name = 'changes'",
                    (row["last_id"], row["last_change_id"], row["position"]),
                )
            elif last == 0:
                curs.execute(
                    f"UPDATE {rs.POSITION_TABLE} SET last_id = 0, last_change_id = '',"
                    " position = 0 WHERE name = 'changes'"
                )
            return n

    @staticmethod
    def _still_there(curs: Any, last: int, change_id: str) -> bool:
        curs.execute(f"SELECT change_id FROM {schema.CHANGES_TABLE} WHERE id = %s", (last,))
        row = curs.fetchone()
        return row is not None and row["change_id"] == change_id
