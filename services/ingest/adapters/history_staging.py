"""Staged history events (home database): written by uploads, read back sorted by the
appender, deleted when their job ends.

A row holds the encoded log event (topic and state, exactly as it will be stored), its
sort key (event time, kind rank, log id) and the ids that route it to a partition. The
primary key (job, log id) makes a repeated upload of an event a duplicate of the job.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresDatastore
from psycopg.rows import tuple_row

from services.ingest.adapters.history_jobs import Job, select_job
from services.ingest.domain.history_chunks import ROW_OVERHEAD, StagedRow
from services.ingest.domain.history_clock import SortKey
from services.ingest.domain.history_job import check_upload
from services.ingest.schema import HISTORY_JOBS_TABLE as JOBS
from services.ingest.schema import HISTORY_STAGING_TABLE as STAGING

# Rows a server-side cursor fetches at a time while the appender reads a chunk.
FETCH_ROWS = 200


@dataclass(frozen=True)
class ToStage:
    """One accepted upload item, encoded."""

    stored: StoredEvent
    event_time_us: int
    kind_rank: int
    user_id: str
    anonymous_id: str


@dataclass(frozen=True)
class Tally:
    """What an upload call adds to its job's counts besides the staged rows."""

    received: int
    rejected: int
    # Duplicates found before staging: in the log, or repeated within the call.
    duplicates: int


class HistoryStaging:
    def __init__(self, datastore: PostgresDatastore) -> None:
        self._datastore = datastore

    def stage(
        self, app_id: str, job_id: uuid.UUID, items: Sequence[ToStage], tally: Tally
    ) -> tuple[Job, set[uuid.UUID]] | None:
        """Stage `items` (each once per job) and count the call; the job after it and the
        log ids newly staged. None: no such job of the app; JobRefused: not staging."""
        with self._datastore.transaction(commit=True) as curs:
            job = select_job(curs, app_id, job_id, lock=True)
            if job is None:
                return None
            check_upload(str(job_id), job.state)
            inserted: set[uuid.UUID] = set()
            if items:
                curs.execute(
                    f"INSERT INTO {STAGING} (job_id, log_id, event_time_us, kind, user_id,"
                    " anonymous_id, topic, state)"
                    " SELECT %b, * FROM unnest(%b::uuid[], %b::bigint[], %b::smallint[],"
                    " %b::text[], %b::text[], %b::text[], %b::bytea[])"
                    " ON CONFLICT (job_id, log_id) DO NOTHING RETURNING log_id",
                    (
                        job_id,
                        [i.stored.originator_id for i in items],
                        [i.event_time_us for i in items],
                        [i.kind_rank for i in items],
                        [i.user_id for i in items],
                        [i.anonymous_id for i in items],
                        [i.stored.topic for i in items],
                        [i.stored.state for i in items],
                    ),
                )
                inserted = {row["log_id"] for row in curs.fetchall()}
            times = [i.event_time_us for i in items if i.stored.originator_id in inserted]
            duplicates = tally.duplicates + len(items) - len(inserted)
            curs.execute(
                f"UPDATE {JOBS} SET received = received + %s, rejected = rejected + %s,"
                " duplicates = duplicates + %s, staged = staged + %s,"
                " first_event_us = LEAST(first_event_us, %s),"
                " last_event_us = GREATEST(last_event_us, %s) WHERE job_id = %s",
                (
                    tally.received,
                    tally.rejected,
                    duplicates,
                    len(inserted),
                    min(times, default=None),
                    max(times, default=None),
                    job_id,
                ),
            )
            after = select_job(curs, app_id, job_id)
            assert after is not None
            return after, inserted

    @contextmanager
    def sorted_rows(
        self, job_id: uuid.UUID, after: SortKey | None
    ) -> Iterator[Iterator[StagedRow]]:
        """The job's staged rows after `after`, in sort-key order, read lazily
        (FETCH_ROWS at a time) in one read-only transaction while the context is open."""
        where, params = "job_id = %s", [job_id]
        if after is not None:
            where += " AND (event_time_us, kind, log_id) > (%s, %s, %s)"
            params.extend(after)  # type: ignore[arg-type]
        with (
            self._datastore.get_connection() as conn,
            conn.transaction(),
            conn.cursor(name=f"history_{job_id.hex}", row_factory=tuple_row) as curs,
        ):
            curs.itersize = FETCH_ROWS
            curs.execute(
                "SELECT event_time_us, kind, log_id, user_id, anonymous_id, topic, state"
                f" FROM {STAGING} WHERE {where} ORDER BY event_time_us, kind, log_id",
                params,
            )
            yield (
                StagedRow(
                    key=(row[0], row[1], row[2]),
                    user_id=row[3],
                    anonymous_id=row[4],
                    size=len(row[6]) + ROW_OVERHEAD,
                    stored=StoredEvent(
                        originator_id=row[2],
                        originator_version=1,
                        topic=row[5],
                        state=bytes(row[6]),
                    ),
                )
                for row in curs
            )

    def remaining(self, job_id: uuid.UUID, after: SortKey | None) -> bool:
        """Whether any staged row lies after `after`."""
        with self.sorted_rows(job_id, after) as rows:
            return next(rows, None) is not None
