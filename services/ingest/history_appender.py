"""Appending a finished history import to the log, one chunk at a time (blocking calls,
run on a worker thread by `history_loop`).

A job's steps, each safe to repeat after a crash at any point:
1. HistoryImportStarted in every partition (its id comes from the job: stored once).
2. Chunks: the staged rows after the job's cursor, read in sort-key order (PostgreSQL
   sorts them through the staging index), placed with the app's clock ticks by the
   `ChunkPlanner`, appended in one transaction per partition; then the cursor moves. A
   chunk replanned after a crash is the same chunk: an event any partition already
   holds is not appended again (one this job stored still counts as appended), and a
   tick or marker id is stored once per partition, so nothing is stored twice.
3. The ticks after the last event and HistoryImportFinished in every partition; the
   job is done and its staging rows are deleted.

Memory: one chunk, at most `max_events` rows and `max_bytes` bytes per partition, plus
the FETCH_ROWS staged rows being read; whatever the size of the history.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Collection
from typing import Any

from eventsourcing.persistence import StoredEvent
from psycopg.sql import SQL, Identifier

from services.eventlog.events import (
    AppClockTicked,
    HistoryImportFinished,
    HistoryImportStarted,
    app_tick_uuid,
    history_marker_uuid,
)
from services.eventlog.partitioned import PartitionedLog
from services.ingest.adapters.history_jobs import Job
from services.ingest.adapters.history_progress import AppendProgress
from services.ingest.adapters.history_staging import FETCH_ROWS, HistoryStaging
from services.ingest.adapters.identity_links import IdentityLinks
from services.ingest.domain.history_chunks import ChunkPlanner, Item, StagedRow
from services.ingest.domain.history_clock import IDENTIFY_RANK
from services.ingest.domain.history_job import JobState
from services.ingest.routing import partition_for


def needs_appending(job: Job) -> bool:
    """Whether the appender has work on `job` (see AppendProgress.pending)."""
    if job.state is JobState.APPENDING:
        return True
    return (
        job.state is JobState.FAILED
        and bool(job.started_positions)
        and not (job.finished_positions)
    )


def _marker(cls: type[Any], job: Job, **fields: Any) -> Any:
    """The job's Started or Finished marker (its id from the job: stored once)."""
    return cls(
        originator_id=history_marker_uuid(job.app_id, cls.KIND, str(job.job_id)),
        originator_version=1,
        app_id=job.app_id,
        job_id=str(job.job_id),
        **fields,
    )


class _Router:
    """Partitions of one chunk's rows, following identity links as the chunk goes."""

    def __init__(self, log: PartitionedLog, app_id: str, links: IdentityLinks | None) -> None:
        self._deployment = log.deployment
        self._app_id = app_id
        self._links = links
        self._known: dict[tuple[str, str], str] = {}

    def prepare(self, rows: list[StagedRow]) -> None:
        """Read the links of the rows' anonymous ids not seen in this chunk yet."""
        if self._links is None:
            return
        wanted = {(self._app_id, r.anonymous_id) for r in rows if not r.user_id}
        wanted -= self._known.keys()
        if wanted:
            self._known.update(self._links.lookup(wanted))

    def __call__(self, row: StagedRow) -> int:
        if self._deployment.partitions == 1:
            return 0
        if row.key[1] == IDENTIFY_RANK and row.user_id and row.anonymous_id:
            self._known[(self._app_id, row.anonymous_id)] = row.user_id
        return partition_for(
            self._deployment, self._app_id, row.user_id, row.anonymous_id, self._known
        )


class HistoryAppender:
    def __init__(
        self,
        log: PartitionedLog,
        staging: HistoryStaging,
        progress: AppendProgress,
        links: IdentityLinks | None,
        *,
        max_events: int = 2000,
        max_bytes: int = 2_000_000,
    ) -> None:
        self._log = log
        self._staging = staging
        self._progress = progress
        self._links = links
        self._max_events = max_events
        self._max_bytes = max_bytes

    def step(self, job: Job) -> bool:
        """Do the job's next step; True when nothing is left to do."""
        if not needs_appending(job):
            return True
        if job.state is JobState.FAILED:
            self._finish(job)
            return True
        if not job.started_positions:
            self._start(job)
            return False
        planner = self._plan(job)
        if planner.rows or planner.ticks:
            self._append(job, planner)
            return False
        self._finish(job)
        return True

    def _start(self, job: Job) -> None:
        marker = _marker(HistoryImportStarted, job, first_event_us=job.first_event_us or 0)
        self._progress.started(job.job_id, self._everywhere(marker, []))

    def _plan(self, job: Job) -> ChunkPlanner:
        router = _Router(self._log, job.app_id, self._links)
        planner = ChunkPlanner(
            job.cursor,
            self._log.partitions,
            router,
            max_events=self._max_events,
            max_bytes=self._max_bytes,
        )
        with self._staging.sorted_rows(job.job_id, job.cursor.after) as rows:
            while batch := list(itertools.islice(rows, FETCH_ROWS)):
                router.prepare(batch)
                if not all(planner.offer(row) for row in batch):
                    break
        return planner

    def _append(self, job: Job, planner: ChunkPlanner) -> None:
        ids = [row.log_id for row in planner.rows]
        held = self._held(ids)
        # Rows this job stored before a crash count as appended; others in the log (a
        # live event with the same id) are skipped.
        appended = sum(1 for mark in held.values() if mark == str(job.job_id))
        ticks = {tick: self._tick(job.app_id, tick) for tick in planner.ticks}
        wanted = set(ids)
        for partition, items in enumerate(planner.batches()):
            stored = self._stored(items, ticks, held.keys())
            if stored:
                outcome = self._log.append(partition, stored).outcome
                appended += sum(1 for key in outcome.inserted if key in wanted)
        # The chunk's links are recorded once it is in the log, not before: a chunk planned
        # again after a crash must route the anonymous rows that precede its Identify to
        # the anonymous id's partition, as the first plan did (the router learns the link
        # at the Identify's place). A live event of the anonymous id appended meanwhile
        # reaches the old partition and is sent on by the projector (a straggler).
        if self._links is not None:
            self._record_links(job.app_id, planner.rows)
        self._progress.advance(job.job_id, planner.cursor, len(planner.rows), appended)

    def _held(self, ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
        """The `history_job` of each of those events any partition already holds."""
        found: dict[uuid.UUID, str] = {}
        decode = self._log.mapper.transcoder.decode
        for partition in range(self._log.partitions):
            recorder = self._log.recorder(partition)
            with recorder.datastore.get_connection() as conn, conn.cursor() as curs:
                curs.execute(
                    SQL(
                        "SELECT originator_id, state FROM {}.{} WHERE originator_id = ANY(%b)"
                    ).format(
                        Identifier(recorder.datastore.schema),
                        Identifier(recorder.events_table_name),
                    ),
                    (ids,),
                )
                for row in curs.fetchall():
                    state = decode(bytes(row["state"]))
                    found[row["originator_id"]] = str(state.get("history_job", ""))
        return found

    def _finish(self, job: Job) -> None:
        planner = ChunkPlanner(job.cursor, self._log.partitions, lambda row: 0)
        planner.end_of_history()  # at most one tick: the end of the last event's hour
        marker = _marker(HistoryImportFinished, job, events=job.appended)
        before = [self._tick(job.app_id, tick) for tick in planner.ticks]
        self._progress.finished(job.job_id, self._everywhere(marker, before))

    def _everywhere(self, marker: Any, before: list[StoredEvent]) -> list[int]:
        """Append `before` and then `marker` to every partition; the marker's positions."""
        stored = self._log.encode(marker)
        return [
            self._log.append(partition, [*before, stored]).position(marker.originator_id)[0]
            for partition in range(self._log.partitions)
        ]

    def _tick(self, app_id: str, tick_us: int) -> StoredEvent:
        return self._log.encode(
            AppClockTicked(
                originator_id=app_tick_uuid(app_id, tick_us),
                originator_version=1,
                app_id=app_id,
                tick_time_us=tick_us,
            )
        )

    @staticmethod
    def _stored(
        items: list[Item], ticks: dict[int, StoredEvent], present: Collection[uuid.UUID]
    ) -> list[StoredEvent]:
        out: list[StoredEvent] = []
        for item in items:
            if isinstance(item, int):
                out.append(ticks[item])
            elif item.log_id not in present:
                out.append(item.stored)
        return out

    def _record_links(self, app_id: str, rows: list[StagedRow]) -> None:
        """Links of the chunk's Identify events, once the chunk is appended."""
        assert self._links is not None
        for row in rows:
            if row.key[1] == IDENTIFY_RANK and row.user_id and row.anonymous_id:
                self._links.record(app_id, row.anonymous_id, row.user_id)
