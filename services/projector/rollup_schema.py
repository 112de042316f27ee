"""Tables of the projector's analytics rollups (AnalyticsService). Created by services.migrate.

They are folded from `projector_changes` by a background job (adapters/rollups.py),
never by the projection's own transaction: rollups may lag the read models by a
round, and are rebuilt from the changes whenever those are replaced.
"""

from __future__ import annotations

POSITION_TABLE = "analytics_rollup_position"
DAILY_MOVES_TABLE = "analytics_daily_moves"
SEGMENT_DAILY_TABLE = "analytics_segment_daily"
LIFECYCLE_DAYS_TABLE = "analytics_lifecycle_days"
LIFECYCLE_DAILY_TABLE = "analytics_lifecycle_daily"
LIFECYCLE_WINDOWS_TABLE = "analytics_lifecycle_windows"
# The fold's row in POSITION_TABLE. A new name refolds every rollup from zero: the
# first fold ("changes") summed lifecycle changes in effective-time order, which
# corrections (a change dated before the one it corrects) do not follow.
FOLD_NAME = "changes-2"
# Flows from the end of day E - n to the end of day E (the projector's recorded
# clock's day), kept ready for these n.
WINDOW_DAYS = (1, 7, 30, 90)

# Every rollup table, in the order a reset empties them.
TABLES = (
    DAILY_MOVES_TABLE,
    SEGMENT_DAILY_TABLE,
    LIFECYCLE_DAYS_TABLE,
    LIFECYCLE_DAILY_TABLE,
    LIFECYCLE_WINDOWS_TABLE,
)

STATEMENTS = [
    # How far the fold has come: the last change row (id and change_id, to notice a
    # replaced change table), the log position of the changes folded, and the day
    # the lifecycle windows end at (-1: none kept).
    f"""
    CREATE TABLE IF NOT EXISTS {POSITION_TABLE} (
        name text PRIMARY KEY,
        last_id bigint NOT NULL,
        last_change_id text NOT NULL,
        position bigint NOT NULL
    )
    """,
    f"ALTER TABLE {POSITION_TABLE} ADD COLUMN IF NOT EXISTS windows_day integer"
    " NOT NULL DEFAULT -1",
    f"INSERT INTO {POSITION_TABLE} VALUES ('{FOLD_NAME}', 0, '', 0) ON CONFLICT DO NOTHING",
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
    # Replaced by the tables below (they date a user's state the way as-of queries do).
    "DROP TABLE IF EXISTS analytics_lifecycle_moves",
    # Per user and UTC day with lifecycle changes: the user's state at the end of the
    # previous such day (prev_state) and at the end of this one (last_state): of their
    # latest change made that took effect by then, as GetLifecycleSummary's as_of_time
    # counts. States are digits: 0 none, 1 new ... 6 reactivated.
    f"""
    CREATE TABLE IF NOT EXISTS {LIFECYCLE_DAYS_TABLE} (
        app_id text NOT NULL,
        user_id text NOT NULL,
        day integer NOT NULL,
        prev_state smallint NOT NULL,
        last_state smallint NOT NULL,
        PRIMARY KEY (app_id, user_id, day)
    )
    """,
    # The flows between two days read only the rows in between, from the index alone.
    f"CREATE INDEX IF NOT EXISTS {LIFECYCLE_DAYS_TABLE}_day ON {LIFECYCLE_DAYS_TABLE}"
    " (app_id, day) INCLUDE (user_id, prev_state, last_state)",
    # Users entering minus users leaving each state per UTC day: running sums give the
    # users per state at the end of any day.
    f"""
    CREATE TABLE IF NOT EXISTS {LIFECYCLE_DAILY_TABLE} (
        app_id text NOT NULL,
        day integer NOT NULL,
        state smallint NOT NULL,
        delta bigint NOT NULL,
        PRIMARY KEY (app_id, day, state)
    )
    """,
    # Users who changed between the end of day windows_day - days and the end of
    # windows_day, per (state at the start, state at the end): kept up to date by
    # every fold, computed again when the recorded clock enters a new day.
    f"""
    CREATE TABLE IF NOT EXISTS {LIFECYCLE_WINDOWS_TABLE} (
        app_id text NOT NULL,
        days integer NOT NULL,
        from_state smallint NOT NULL,
        to_state smallint NOT NULL,
        users bigint NOT NULL,
        PRIMARY KEY (app_id, days, from_state, to_state)
    )
    """,
]
