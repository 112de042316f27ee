"""The background task of ingest that appends finished history imports.

It looks for jobs with work (at start, every `poll_s`, and at once when this process
finishes one), takes each job's lease and steps it to the end on a worker thread, one
job at a time per process. Because a job's state and cursor live in the database, a
restarted ingest (or another replica, once the lease is free) resumes where appending
stopped.

Database errors (the database away, a connection lost, a pool timeout) are retried
with backoff, shown as the job's `last_error`. Any other error is a bug: the job is
marked failed with the reason, and its Finished marker is still appended, so the
projector takes the app out of history mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import psycopg
import structlog
from eventsourcing.persistence import PersistenceError
from psycopg_pool import PoolTimeout

from services.ingest.adapters.history_progress import AppendProgress, JobLease
from services.ingest.history_appender import HistoryAppender, needs_appending

_log = structlog.get_logger("ingest.history")
TRANSIENT = (PersistenceError, psycopg.Error, PoolTimeout, OSError)
MAX_BACKOFF_S = 30.0


class HistoryLoop:
    def __init__(
        self,
        appender: HistoryAppender,
        progress: AppendProgress,
        lease: JobLease,
        *,
        poll_s: float = 2.0,
    ) -> None:
        self._appender = appender
        self._progress = progress
        self._lease = lease
        self._poll_s = poll_s
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="history-append")

    def kick(self) -> None:
        """Look for work now (a job was just finished)."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop after the step in flight (at most one chunk) and let go of the lease."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
        await asyncio.to_thread(self._lease.close)

    async def _run(self) -> None:
        while not self._stopping:
            try:
                jobs = await asyncio.to_thread(self._progress.pending)
            except TRANSIENT as error:
                _log.warning("cannot list history jobs", error=repr(error))
                jobs = []
            except Exception:  # a bug: keep the loop (and ingest) alive, try again later
                _log.exception("cannot list history jobs")
                jobs = []
            for job_id in jobs:
                if self._stopping:
                    break
                await self._drive(job_id)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_s)

    async def _drive(self, job_id: uuid.UUID) -> None:
        backoff = self._poll_s
        try:
            while not self._stopping:
                try:
                    if not await asyncio.to_thread(self._lease.take, job_id):
                        return  # another ingest process appends it
                    job = await asyncio.to_thread(self._progress.load, job_id)
                    if job is None or not needs_appending(job):
                        return
                    if await asyncio.to_thread(self._appender.step, job):
                        _log.info("history import appended", job_id=str(job_id))
                        return
                    backoff = self._poll_s
                except TRANSIENT as error:
                    _log.warning(
                        "history append failed; retrying", job_id=str(job_id), error=repr(error)
                    )
                    with contextlib.suppress(*TRANSIENT):
                        await asyncio.to_thread(self._progress.note_error, job_id, str(error))
                    await self._pause(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
                except Exception as error:
                    _log.exception("history append failed for good", job_id=str(job_id))
                    reason = f"appending failed: {type(error).__name__}: {error}"
                    with contextlib.suppress(*TRANSIENT):
                        await asyncio.to_thread(self._progress.fail, job_id, reason)
                    await self._pause(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
        finally:
            with contextlib.suppress(*TRANSIENT):
                await asyncio.to_thread(self._lease.release)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()
