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


_UPSERT_RFM = (
    f"INSERT INTO {schema.RFM_VALUES_TABLE} (app_id, user_id, last_purchase_us, purchases,"
    " amount, partition) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (app_id, user_id)"
    " DO UPDATE SET last_purchase_us = EXCLUDED.last_purchase_us,"
    " purchases = EXCLUDED.purchases, amount = EXCLUDED.amount"
)
_DELETE_RFM = f"DELETE FROM {schema.RFM_VALUES_TABLE} WHERE app_id = %s AND user_id = %s"


def write_rfm_values(
    curs: Cursor[DictRow],
    values: list[tuple[str, str, int, float, float]],
    gone: list[tuple[str, str]],
    partition: int,
) -> None:
    """Partitioned: the purchasers' current values, input of the app-wide cut points."""
    if gone:
        curs.executemany(_DELETE_RFM, gone)
    if values:
        curs.executemany(_UPSERT_RFM, [(*row, partition) for row in values])


def write(curs: Cursor[DictRow], rows: AppRows, partition: int = 0) -> None:
    if rows.apps:
        curs.executemany(_UPSERT_APP, [(*row, partition) for row in rows.apps])
    if rows.aliases:
        curs.executemany(_UPSERT_ALIAS, [(*row, partition) for row in rows.aliases])
