"""History import jobs in the home database: one row each, the truth of a job's state.

Every change of state happens under the job row's lock (`FOR UPDATE`), so an upload and
the Finish racing it serialise: an upload either commits before Finish or sees the job
appending and is refused. Every query names the app, so another app's job id is
simply not found.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.postgres import PostgresDatastore
from psycopg import Cursor, errors

from services.ingest.domain.history_chunks import AppendCursor
from services.ingest.domain.history_job import (
    JobState,
    after_cancel,
    after_finish,
)
from services.ingest.schema import HISTORY_JOBS_TABLE as JOBS
from services.ingest.schema import HISTORY_STAGING_TABLE as STAGING


@dataclass(frozen=True)
class Job:
    """A job as stored (times are the database's)."""

    job_id: uuid.UUID
    app_id: str
    state: JobState
    requested_by: str
    peer: str
    failure_reason: str
    last_error: str
    created_at: datetime
    finish_requested_at: datetime | None
    ended_at: datetime | None
    received: int
    staged: int
    duplicates: int
    rejected: int
    processed: int
    appended: int
    first_event_us: int | None
    last_event_us: int | None
    last_tick_us: int | None
    cursor: AppendCursor
    started_positions: list[int]
    finished_positions: list[int]

    @classmethod
    def of(cls, row: dict[str, Any]) -> Job:
        after = None
        if row["cursor_id"] is not None:
            after = (row["cursor_time_us"], row["cursor_kind"], row["cursor_id"])
        return cls(
            **{k: row[k] for k in _PLAIN},
            state=JobState(row["state"]),
            cursor=AppendCursor(after, row["last_tick_us"]),
        )


_PLAIN = [
    name
    for name in Job.__dataclass_fields__
    if name not in ("state", "cursor")  # built from their columns
]
COLUMNS = ", ".join([*_PLAIN, "state", "cursor_time_us", "cursor_kind", "cursor_id"])


class JobConflict(Exception):
    """Another job of the app is running: it is `running`."""

    def __init__(self, running: Job) -> None:
        super().__init__(str(running.job_id))
        self.running = running


class HistoryJobs:
    def __init__(self, datastore: PostgresDatastore) -> None:
        self._datastore = datastore

    def create(self, app_id: str, job_id: uuid.UUID, requested_by: str, peer: str) -> Job:
        """A new staging job, or the job of that id if it exists (a retried start);
        JobConflict if another job of the app is running."""
        for _ in range(3):
            with self._datastore.transaction(commit=True) as curs:
                found = select_job(curs, app_id, job_id)
                if found is not None:
                    return found
                try:
                    with curs.connection.transaction():  # a savepoint
                        curs.execute(
                            f"INSERT INTO {JOBS} (job_id, app_id, state, requested_by, peer)"
                            f" VALUES (%s, %s, %s, %s, %s) RETURNING {COLUMNS}",
                            (job_id, app_id, JobState.STAGING.value, requested_by, peer),
                        )
                        return Job.of(curs.fetchone())  # type: ignore[arg-type]
                except errors.UniqueViolation:
                    pass
                running = self._running(curs, app_id)
            if running is not None and running.job_id != job_id:
                raise JobConflict(running)
            # Our own retry won the race, or the running job ended meanwhile: look again.
        msg = f"could not start a history import for {app_id}"
        raise RuntimeError(msg)

    @staticmethod
    def _running(curs: Cursor[Any], app_id: str) -> Job | None:
        curs.execute(
            f"SELECT {COLUMNS} FROM {JOBS} WHERE app_id = %s AND state IN (%s, %s)",
            (app_id, JobState.STAGING.value, JobState.APPENDING.value),
        )
        row = curs.fetchone()
        return None if row is None else Job.of(row)

    def get(self, app_id: str, job_id: uuid.UUID) -> Job | None:
        with self._datastore.cursor() as curs:
            return select_job(curs, app_id, job_id)

    def recent(
        self, app_id: str, limit: int, after: tuple[datetime, uuid.UUID] | None
    ) -> list[Job]:
        """The app's jobs, newest first, after the (created_at, job_id) of a page's last."""
        where, params = "app_id = %s", [app_id]
        if after is not None:
            where += " AND (created_at, job_id) < (%s, %s)"
            params += [after[0], after[1]]  # type: ignore[list-item]
        with self._datastore.cursor() as curs:
            curs.execute(
                f"SELECT {COLUMNS} FROM {JOBS} WHERE {where}"
                " ORDER BY created_at DESC, job_id DESC LIMIT %s",
                (*params, limit),
            )
            return [Job.of(row) for row in curs.fetchall()]

    def finish(self, app_id: str, job_id: uuid.UUID) -> Job | None:
        """Apply FinishHistoryImport (JobRefused if the state forbids it); None: no job."""
        with self._datastore.transaction(commit=True) as curs:
            job = select_job(curs, app_id, job_id, lock=True)
            if job is None:
                return None
            state = after_finish(str(job_id), job.state, job.staged)
            if state is job.state:
                return job
            done = state is JobState.DONE
            curs.execute(
                f"UPDATE {JOBS} SET state = %s, finish_requested_at = now(),"
                " ended_at = CASE WHEN %s THEN now() END WHERE job_id = %s",
                (state.value, done, job_id),
            )
            if done:  # nothing staged to append; duplicates were never staged
                curs.execute(f"DELETE FROM {STAGING} WHERE job_id = %s", (job_id,))
            return select_job(curs, app_id, job_id)

    def cancel(self, app_id: str, job_id: uuid.UUID) -> Job | None:
        """Apply CancelHistoryImport (JobRefused if the state forbids it); None: no job."""
        with self._datastore.transaction(commit=True) as curs:
            job = select_job(curs, app_id, job_id, lock=True)
            if job is None:
                return None
            after_cancel(str(job_id), job.state)
            if job.state is JobState.CANCELLED:
                return job
            curs.execute(
                f"UPDATE {JOBS} SET state = %s, ended_at = now() WHERE job_id = %s",
                (JobState.CANCELLED.value, job_id),
            )
            curs.execute(f"DELETE FROM {STAGING} WHERE job_id = %s", (job_id,))
            return select_job(curs, app_id, job_id)


def select_job(
    curs: Cursor[Any], app_id: str, job_id: uuid.UUID, *, lock: bool = False
) -> Job | None:
    """The app's job of that id (locked for the transaction with `lock`), or None."""
    curs.execute(
        f"SELECT {COLUMNS} FROM {JOBS} WHERE app_id = %s AND job_id = %s"
        + (" FOR UPDATE" if lock else ""),
        (app_id, job_id),
    )
    row = curs.fetchone()
    return None if row is None else Job.of(row)
