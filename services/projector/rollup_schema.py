"""Tables of the projector's analytics rollups (AnalyticsService). Created by services.migrate.

They are folded from `projector_changes` by a background job (adapters/rollups.py),
never by the projection's own transaction: rollups may lag the read models by a
round, and are rebuilt from the changes whenever those are replaced.
"""

from __future__ import annotations

POSITION_TABLE = "analytics_rollup_position"
DAILY_MOVES_TABLE = "analytics_daily_moves"
SEGMENT_DAILY_TABLE = "analytics_segment_daily"
LIFECYCLE_MOVES_TABLE = "analytics_lifecycle_moves"

# Every rollup table, in the order a reset empties them.
TABLES = (DAILY_MOVES_TABLE, SEGMENT_DAILY_TABLE, LIFECYCLE_MOVES_TABLE)

STATEMENTS = [
    # How far the fold has come: the last change row (id and change_id, to notice a
    # replaced change table) and the log position of the changes folded.
    f"""
    CREATE TABLE IF NOT EXISTS {POSITION_TABLE} (
        name text PRIMARY KEY,
        last_id bigint NOT NULL,
        last_change_id text NOT NULL,
        position bigint NOT NULL
    )
    """,
    f"INSERT INTO {POSITION_TABLE} VALUES ('changes', 0, '', 0) ON CONFLICT DO NOTHING",
    # Lifecycle and RFM changes per UTC day (of their effective time) and (from, to) pair.
    f"""
    CREATE TABLE IF NOT EXISTS {DAILY_MOVES_TABLE} (
        app_id text NOT NULL,
        kind text NOT NULL,
        day integer NOT NULL,
        from_value text NOT NULL,
        to_value text NOT NULL,
        n bigint NOT NULL,
        PRIMARY KEY (app_id, kind, day, from_value, to_value)
    )
    """,
    # Entries minus exits per segment and UTC day.
    f"""
    CREATE TABLE IF NOT EXISTS {SEGMENT_DAILY_TABLE} (
        app_id text NOT NULL,
        segment_id text NOT NULL,
        day integer NOT NULL,
        delta bigint NOT NULL,
        PRIMARY KEY (app_id, segment_id, day)
    )
    """,
    # Per app, UTC day and user (a 64-bit hash of the id): the first and the last lifecycle
    # change of that day, each as effective_us * 1000 + (sequence mod 100) * 10 + the code
    # of a state (0 none, 1 new ... 6 reactivated), so the flows between two days are one
    # hash aggregate (min of the first, max of the last) over the users who changed.
    f"""
    CREATE TABLE IF NOT EXISTS {LIFECYCLE_MOVES_TABLE} (
        app_id text NOT NULL,
        day integer NOT NULL,
        user_key bigint NOT NULL,
        first_key bigint NOT NULL,
        last_key bigint NOT NULL,
        PRIMARY KEY (app_id, day, user_key)
    )
    """,
]
