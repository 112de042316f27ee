"""The facts read model: events (and clock ticks) as history queries and builds read them."""

from __future__ import annotations

from psycopg import Cursor
from psycopg.rows import DictRow

from services.projector import schema
from services.projector.adapters.projection.rows import FactRows

_COPY = (
    f"COPY {schema.FACTS_TABLE} (app_id, user_id, name, event_time_us, position, props)"
    " FROM STDIN WITH (FORMAT BINARY)"
)
_TYPES = ["text", "text", "text", "int8", "int8", "jsonb"]
_ERASE = (
    f"UPDATE {schema.FACTS_TABLE} SET props = '{{}}'"
    " WHERE app_id = %s AND user_id = %s AND props <> '{}'"
)
_MOVE = f"UPDATE {schema.FACTS_TABLE} SET user_id = %s WHERE app_id = %s AND user_id = %s"


def write(curs: Cursor[DictRow], rows: FactRows) -> None:
    """Append the facts; a merged anonymous user's facts become the user's."""
    if rows.facts:
        with curs.copy(_COPY) as copy:
            copy.set_types(_TYPES)
            for row in rows.facts:
                copy.write_row(row)
    if rows.moved:
        curs.executemany(_MOVE, rows.moved)
    if rows.erased:
        curs.executemany(_ERASE, rows.erased)
