"""Ingest's own tables (home database).

- Identity links: which user an anonymous id turned out to be. Only a partitioned
  deployment needs them: an event that names only an anonymous id is routed to the
  partition of the user that id was linked to by an Identify, so a user's events keep
  going to one partition after the anonymous history was handed over.
- History import jobs and their staged events (HistoryImportService). Staged rows are
  read in (event time, kind, log id) order through their index, so PostgreSQL sorts a
  history of any size; they are deleted when the job is done or cancelled.
"""

from __future__ import annotations

IDENTITY_LINKS_TABLE = "ingest_identity_links"
HISTORY_JOBS_TABLE = "ingest_history_jobs"
HISTORY_STAGING_TABLE = "ingest_history_staging"

STATEMENTS = [
    f"""
    CREATE TABLE IF NOT EXISTS {IDENTITY_LINKS_TABLE} (
        app_id text NOT NULL,
        anonymous_id text NOT NULL,
        user_id text NOT NULL,
        linked_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (app_id, anonymous_id)
    )
    """,
    f"""
    CREATE TABLE IF NOT EXISTS {HISTORY_JOBS_TABLE} (
        job_id uuid PRIMARY KEY,
        app_id text NOT NULL,
        state text NOT NULL,
        requested_by text NOT NULL DEFAULT '',
        peer text NOT NULL DEFAULT '',
        failure_reason text NOT NULL DEFAULT '',
        last_error text NOT NULL DEFAULT '',
        created_at timestamptz NOT NULL DEFAULT now(),
        finish_requested_at timestamptz,
        ended_at timestamptz,
        received bigint NOT NULL DEFAULT 0,
        staged bigint NOT NULL DEFAULT 0,
        duplicates bigint NOT NULL DEFAULT 0,
        rejected bigint NOT NULL DEFAULT 0,
        processed bigint NOT NULL DEFAULT 0,
        appended bigint NOT NULL DEFAULT 0,
        first_event_us bigint,
        last_event_us bigint,
        -- The appender's cursor: the sort key of the last row appended, the newest tick.
        cursor_time_us bigint,
        cursor_kind smallint,
        cursor_id uuid,
        last_tick_us bigint,
        started_positions bigint[] NOT NULL DEFAULT '{{}}',
        finished_positions bigint[] NOT NULL DEFAULT '{{}}'
    )
    """,
    # One running job per app.
    f"""
    CREATE UNIQUE INDEX IF NOT EXISTS {HISTORY_JOBS_TABLE}_running
    ON {HISTORY_JOBS_TABLE} (app_id) WHERE state IN ('staging', 'appending')
    """,
    f"""
    CREATE INDEX IF NOT EXISTS {HISTORY_JOBS_TABLE}_by_app
    ON {HISTORY_JOBS_TABLE} (app_id, created_at DESC, job_id)
    """,
    f"""
    CREATE TABLE IF NOT EXISTS {HISTORY_STAGING_TABLE} (
        job_id uuid NOT NULL,
        log_id uuid NOT NULL,
        event_time_us bigint NOT NULL,
        kind smallint NOT NULL,
        user_id text NOT NULL,
        anonymous_id text NOT NULL,
        topic text NOT NULL,
        state bytea NOT NULL,
        PRIMARY KEY (job_id, log_id)
    )
    """,
    f"""
    CREATE INDEX IF NOT EXISTS {HISTORY_STAGING_TABLE}_order
    ON {HISTORY_STAGING_TABLE} (job_id, event_time_us, kind, log_id)
    """,
]
