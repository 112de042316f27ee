"""The changes read model (every user's timeline) and the outbox the relay publishes."""

from __future__ import annotations

from psycopg import Cursor
from psycopg.rows import DictRow

from services.projector import schema
from services.projector.adapters.projection.rows import ChangeRows

_COPY_CHANGES = f"""
COPY {schema.CHANGES_TABLE} (
    app_id, user_id, sequence, change_id, kind, from_value, to_value, cause, event_ids,
    event_name, effective_us, recorded_us, position, correction, corrected_since_us, details,
    partition
) FROM STDIN WITH (FORMAT BINARY)
"""
_CHANGE_TYPES = [
    "text",
    "text",
    "int8",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text[]",
    "text",
    "int8",
    "int8",
    "int8",
    "bool",
    "int8",
    "jsonb",
    "int4",
]
_COPY_OUTBOX = (
    f"COPY {schema.OUTBOX_TABLE} (subject, msg_id, msg_type, payload, partition)"
    " FROM STDIN WITH (FORMAT BINARY)"
)
_OUTBOX_TYPES = ["text", "text", "text", "bytea", "int4"]


def write(curs: Cursor[DictRow], rows: ChangeRows, partition: int = 0) -> None:
    """Append the changes to the timelines, and the published ones to the outbox."""
    if not rows.changes:
        return
    with curs.copy(_COPY_CHANGES) as copy:
        copy.set_types(_CHANGE_TYPES)
        for row in rows.changes:
            copy.write_row((*row, partition))
    with curs.copy(_COPY_OUTBOX) as copy:
        copy.set_types(_OUTBOX_TYPES)
        for outbox_row in rows.outbox:
            copy.write_row((*outbox_row, partition))
