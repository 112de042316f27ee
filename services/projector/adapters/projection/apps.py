"""The fold's per-app state (RFM cut points) and the aliases of anonymous ids."""

from __future__ import annotations

from psycopg import Cursor
from psycopg.rows import DictRow

from services.projector import schema
from services.projector.adapters.projection.rows import AppRows

_UPSERT_APP = (
    f"INSERT INTO {schema.APPS_TABLE} (app_id, state, partition) VALUES (%s, %s::jsonb, %s)"
    " ON CONFLICT (partition, app_id) DO UPDATE SET state = EXCLUDED.state"
)
_UPSERT_ALIAS = (
    f"INSERT INTO {schema.ALIASES_TABLE} (app_id, anonymous_id, user_id, partition)"
    " VALUES (%s, %s, %s, %s) ON CONFLICT (partition, app_id, anonymous_id)"
    " DO UPDATE SET user_id = EXCLUDED.user_id"
)


def write(curs: Cursor[DictRow], rows: AppRows, partition: int = 0) -> None:
    if rows.apps:
        curs.executemany(_UPSERT_APP, [(*row, partition) for row in rows.apps])
    if rows.aliases:
        curs.executemany(_UPSERT_ALIAS, [(*row, partition) for row in rows.aliases])
