"""What the appender records of a job (home database): its cursor, counts, marker
positions and end. Each update is one statement, made only after the log writes it
reports have committed, so a restart resumes from a cursor that is never ahead of the
log (at worst behind it: the chunk is planned again and stores nothing twice).

Which job an ingest process appends is decided by a PostgreSQL advisory lock held on a
connection of its own (`JobLease`): one appender per job across every ingest process,
and a process that dies releases its jobs with its connection.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import psycopg
from eventsourcing.postgres import PostgresDatastore

from services.ingest.adapters.history_jobs import COLUMNS, Job
from services.ingest.domain.history_chunks import AppendCursor
from services.ingest.domain.history_job import JobState
from services.ingest.schema import HISTORY_JOBS_TABLE as JOBS
from services.ingest.schema import HISTORY_STAGING_TABLE as STAGING

# First key of the advisory locks of history jobs ("hist"); the second is from the job id.
_LOCK_SPACE = 0x68697374


class AppendProgress:
    def __init__(self, datastore: PostgresDatastore) -> None:
        self._datastore = datastore

    def pending(self) -> list[uuid.UUID]:
        """Jobs the appender has work on: appending ones, and failed ones whose Finished
        marker is not yet in the log (so the app leaves history mode)."""
        with self._datastore.cursor() as curs:
            curs.execute(
                f"SELECT job_id FROM {JOBS} WHERE state = %s OR (state = %s"
                " AND cardinality(started_positions) > 0"
                " AND cardinality(finished_positions) = 0) ORDER BY created_at",
                (JobState.APPENDING.value, JobState.FAILED.value),
            )
            return [row["job_id"] for row in curs.fetchall()]

    def load(self, job_id: uuid.UUID) -> Job | None:
        with self._datastore.cursor() as curs:
            curs.execute(f"SELECT {COLUMNS} FROM {JOBS} WHERE job_id = %s", (job_id,))
            row = curs.fetchone()
            return None if row is None else Job.of(row)

    def advance(
        self, job_id: uuid.UUID, cursor: AppendCursor, processed: int, appended: int
    ) -> None:
        after = cursor.after
        with self._datastore.cursor() as curs:
            curs.execute(
                f"UPDATE {JOBS} SET cursor_time_us = %s, cursor_kind = %s, cursor_id = %s,"
                " last_tick_us = %s, processed = processed + %s, appended = appended + %s,"
                " last_error = '' WHERE job_id = %s",
                (
                    after[0] if after else None,
                    after[1] if after else None,
                    after[2] if after else None,
                    cursor.last_tick_us,
                    processed,
                    appended,
                    job_id,
                ),
            )

    def started(self, job_id: uuid.UUID, positions: Sequence[int]) -> None:
        self._set(job_id, "started_positions = %s", list(positions))

    def note_error(self, job_id: uuid.UUID, error: str) -> None:
        self._set(job_id, "last_error = %s", error[:500])

    def fail(self, job_id: uuid.UUID, reason: str) -> None:
        """The job stops for good; its Finished marker still follows (see `pending`)."""
        with self._datastore.cursor() as curs:
            curs.execute(
                f"UPDATE {JOBS} SET state = %s, failure_reason = %s, ended_at = now()"
                " WHERE job_id = %s AND state = %s",
                (JobState.FAILED.value, reason[:500], job_id, JobState.APPENDING.value),
            )

    def finished(self, job_id: uuid.UUID, positions: Sequence[int]) -> None:
        """The Finished markers are in the log: the job is done (or stays failed) and its
        staging rows go."""
        with self._datastore.transaction(commit=True) as curs:
            curs.execute(
                f"UPDATE {JOBS} SET finished_positions = %s, last_error = '',"
                " state = CASE WHEN state = %s THEN %s ELSE state END,"
                " ended_at = coalesce(ended_at, now()) WHERE job_id = %s",
                (list(positions), JobState.APPENDING.value, JobState.DONE.value, job_id),
            )
            curs.execute(f"DELETE FROM {STAGING} WHERE job_id = %s", (job_id,))

    def _set(self, job_id: uuid.UUID, assignment: str, value: object) -> None:
        with self._datastore.cursor() as curs:
            curs.execute(f"UPDATE {JOBS} SET {assignment} WHERE job_id = %s", (value, job_id))


class JobLease:
    """The advisory lock of the job this process appends, on a connection of its own.

    `take` is asked again before every chunk: session advisory locks are reentrant, and a
    connection that broke (its locks gone with it) is opened anew and must win the lock
    again, so a process never appends a job another process has taken over meanwhile.
    One job at a time: `release` lets go of everything this process holds.
    """

    def __init__(self, database_url: str, connect_timeout_s: int = 5) -> None:
        self._url = database_url
        self._timeout = connect_timeout_s
        self._conn: psycopg.Connection | None = None

    def take(self, job_id: uuid.UUID) -> bool:
        """Whether this process holds the job (False: another process does)."""
        row = (
            self._connection()
            .execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", (_LOCK_SPACE, str(job_id)))
            .fetchone()
        )
        return bool(row and row[0])

    def release(self) -> None:
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            self._conn.execute("SELECT pg_advisory_unlock_all()")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self._url, autocommit=True, connect_timeout=self._timeout)
        return self._conn
