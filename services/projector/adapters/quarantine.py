"""The quarantine: log events the projector isolated and skipped, per app.

Records are written by `write_records(curs, records)` inside the transaction of
`ProjectorStore.commit` that moves the tracked position past their events: a skip
is exactly as durable as that commit (never recorded without being skipped, never
skipped without being recorded), and a replay of the same log records the same ones.
Every text value here is made safe to store first (`safe_text`): the record of an
event refused for a NUL character must not be refused for the same reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields
from typing import Any

from psycopg import Cursor

from services.projector import schema
from services.projector.adapters.fanout import Fanout, first_page
from services.projector.adapters.store import ProjectorStore

# Longest text kept of an id or name, and of a detail.
ID_CHARS = 200
DETAIL_CHARS = 500

# Why an event was skipped (the values of the `reason` column).
UNSTORABLE_VALUE = "unstorable_value"
REFUSED_BY_DATABASE = "refused_by_database"
FOLD_FAILED = "fold_failed"
UNDECODABLE = "undecodable"
REASONS = (UNSTORABLE_VALUE, REFUSED_BY_DATABASE, FOLD_FAILED, UNDECODABLE)


def safe_text(value: object, limit: int = ID_CHARS) -> str:
    """`value` as text PostgreSQL accepts: NUL shown as "\\x00", lone surrogates escaped,
    at most `limit` characters (longer ones end in "...")."""
    text = value if isinstance(value, str) else str(value)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Quarantined:
    """One skipped event: where it is in the log, whose it was, and why."""

    position: int
    app_id: str
    kind: str
    reason: str
    detail: str
    event_id: str = ""
    user_id: str = ""
    anonymous_id: str = ""
    event_name: str = ""
    segment_id: str = ""
    event_time_us: int | None = None
    quarantined_us: int = 0


_COLUMNS = ", ".join(f.name for f in fields(Quarantined))
_INSERT = (
    f"INSERT INTO {schema.QUARANTINE_TABLE} ({_COLUMNS})"
    f" VALUES ({', '.join(['%s'] * len(fields(Quarantined)))})"
    " ON CONFLICT (position) DO NOTHING"
)


def write_records(curs: Cursor[Any], records: Sequence[Quarantined]) -> None:
    """Insert `records` in the caller's transaction (the one that commits their position)."""
    if records:
        curs.executemany(_INSERT, [astuple(r) for r in records])


class QuarantineQueries:
    """Reads of the quarantine (for OperationsService and the metrics), in every database
    of the deployment: positions name their partition, so merged by position the pages are
    one query's."""

    def __init__(self, stores: Any) -> None:
        self._fan = Fanout.of(stores)

    def page(self, app_id: str, after_position: int, limit: int) -> list[Quarantined]:
        """The app's records with a position after `after_position`, oldest first."""

        def query(store: ProjectorStore) -> list[Quarantined]:
            with store.cursor() as curs:
                curs.execute(
                    f"SELECT {_COLUMNS} FROM {schema.QUARANTINE_TABLE}"
                    " WHERE app_id = %s AND position > %s ORDER BY position LIMIT %s",
                    (app_id, after_position, limit),
                )
                return [Quarantined(**row) for row in curs.fetchall()]

        return first_page(self._fan.each(query), lambda r: r.position, limit)

    def count(self) -> int:
        def query(store: ProjectorStore) -> int:
            with store.cursor() as curs:
                curs.execute(f"SELECT count(*) AS n FROM {schema.QUARANTINE_TABLE}")
                row = curs.fetchone()
                return int(row["n"]) if row else 0

        return sum(self._fan.each(query))
