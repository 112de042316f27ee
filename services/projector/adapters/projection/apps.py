"""The fold's per-app state (RFM cut points) and the aliases of anonymous ids."""

from __future__ import annotations

from psycopg import Cursor
from psycopg.rows import DictRow

from services.projector import schema
from services.projector.adapters.projection.rows import AppRows

_UPSERT_APP = (
    f"INSERT INTO {schema.APPS_TABLE} (app_id, state) VALUES (%s, %s::jsonb)"
    " ON CONFLICT (app_id) DO UPDATE SET state = EXCLUDED.state"
)
_UPSERT_ALIAS = (
    f"INSERT INTO {schema.ALIASES_TABLE} (app_id, anonymous_id, user_id) VALUES (%s, %s, %s)"
    " ON CONFLICT (app_id, anonymous_id) DO UPDATE SET user_id = EXCLUDED.user_id"
)


def write(curs: Cursor[DictRow], rows: AppRows) -> None:
    if rows.apps:
        curs.executemany(_UPSERT_APP, rows.apps)
    if rows.aliases:
        curs.executemany(_UPSERT_ALIAS, rows.aliases)
