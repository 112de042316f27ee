"""The profiles read model: one row per user, with their packed state."""

from __future__ import annotations

from psycopg import Cursor
from psycopg.rows import DictRow

from services.projector import schema
from services.projector.adapters.projection.rows import ProfileRows

_HOT_COLUMNS = (
    "app_id, user_id, lifecycle_state, lifecycle_since, usual_interval_days, rfm_group,"
    " first_seen, last_seen, event_count, active_days, state, first_seen_us, geo_country,"
    " geo_city, geo_latitude, geo_longitude"
)
_STAGE_COLUMNS = (
    "app_id, user_id, lifecycle_state, lifecycle_since, usual_interval_days, rfm_group,"
    " first_seen, last_seen, event_count, active_days, state, geo_country, geo_city,"
    " geo_latitude, geo_longitude"
)
# Times travel as microseconds and become timestamps in the database (cheaper than
# building a datetime per value here).
_STAGE = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS profiles_stage ("
    " app_id text, user_id text, lifecycle_state text, lifecycle_since bigint,"
    " usual_interval_days double precision, rfm_group text, first_seen bigint,"
    " last_seen bigint, event_count bigint, active_days bigint, state bytea,"
    " geo_country text, geo_city text, geo_latitude float8, geo_longitude float8"
    ") ON COMMIT DELETE ROWS"
)
_STAGE_TYPES = [
    "text",
    "text",
    "text",
    "int8",
    "float8",
    "text",
    "int8",
    "int8",
    "int8",
    "int8",
    "bytea",
    "text",
    "text",
    "float8",
    "float8",
]
_COPY = f"COPY profiles_stage ({_STAGE_COLUMNS}) FROM STDIN WITH (FORMAT BINARY)"
_MERGE = f"""
INSERT INTO {schema.PROFILES_TABLE} ({_HOT_COLUMNS}, partition)
SELECT app_id, user_id, lifecycle_state, to_timestamp(lifecycle_since / 1e6),
       usual_interval_days, rfm_group, to_timestamp(first_seen / 1e6),
       to_timestamp(last_seen / 1e6), event_count, active_days, state, first_seen,
       geo_country, geo_city, geo_latitude, geo_longitude, %s
FROM profiles_stage
ON CONFLICT (app_id, user_id) DO UPDATE SET
    lifecycle_state = EXCLUDED.lifecycle_state, lifecycle_since = EXCLUDED.lifecycle_since,
    usual_interval_days = EXCLUDED.usual_interval_days, rfm_group = EXCLUDED.rfm_group,
    first_seen = EXCLUDED.first_seen, last_seen = EXCLUDED.last_seen,
    event_count = EXCLUDED.event_count, active_days = EXCLUDED.active_days,
    state = EXCLUDED.state, first_seen_us = EXCLUDED.first_seen_us,
    geo_country = EXCLUDED.geo_country, geo_city = EXCLUDED.geo_city,
    geo_latitude = EXCLUDED.geo_latitude, geo_longitude = EXCLUDED.geo_longitude
"""
# Traits, contact, consent and location change only with Identify (and merges).
_UPDATE_FIELDS = f"""
UPDATE {schema.PROFILES_TABLE} SET
    traits = %s::jsonb, time_traits = %s::jsonb, email = %s, phone = %s, push_token = %s,
    consents = %s::jsonb, timezone = %s, country = %s, city = %s, latitude = %s, longitude = %s
WHERE app_id = %s AND user_id = %s
"""
_DELETE = f"DELETE FROM {schema.PROFILES_TABLE} WHERE app_id = %s AND user_id = %s"


def write(curs: Cursor[DictRow], rows: ProfileRows, partition: int = 0) -> None:
    """Upsert the changed users' rows, update the fields Identify sets, delete merged users."""
    if rows.hot:
        curs.execute(_STAGE)
        with curs.copy(_COPY) as copy:
            copy.set_types(_STAGE_TYPES)
            for row in rows.hot:
                copy.write_row(row)
        curs.execute(_MERGE, (partition,))
    if rows.fields:
        curs.executemany(_UPDATE_FIELDS, rows.fields)
    if rows.deleted:
        curs.executemany(_DELETE, rows.deleted)
