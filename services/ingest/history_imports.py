"""History import jobs as use cases: start, upload, finish, cancel, read (blocking calls;
the gRPC servicer runs them on worker threads and only translates).

An upload is judged item by item (`domain.history_upload`, which reuses the rules of
TrackBatch and Identify), built into log events marked with the job, checked against the
log (an event any partition already holds is DUPLICATE, with its position) and staged
(an event the job already staged is DUPLICATE without a position).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.eventlog.events import EVENTS_NAMESPACE, UserIdentified
from services.eventlog.partitioned import PartitionedLog
from services.eventlog.partitions import encode_position
from services.ingest.adapters.history_jobs import HistoryJobs, Job
from services.ingest.adapters.history_staging import HistoryStaging, Tally, ToStage
from services.ingest.domain.build import identified_event, tracked_event
from services.ingest.domain.history_clock import IDENTIFY_RANK, TRACK_RANK
from services.ingest.domain.history_job import check_upload
from services.ingest.domain.history_upload import judge_upload
from services.ingest.domain.model import EventDraft, IdentifyDraft, Limits, Violation
from services.ingest.sealer import Sealer


@dataclass(frozen=True)
class ItemOutcome:
    """What became of one uploaded item."""

    status: str  # "accepted", "duplicate" or "rejected"
    position: int = 0
    violations: tuple[Violation, ...] = ()


@dataclass(frozen=True)
class Uploaded:
    job: Job
    events: list[ItemOutcome]
    identifies: list[ItemOutcome]


def job_id_for(app_id: str, request_id: str) -> uuid.UUID:
    """The job a StartHistoryImport with this request id makes: the same on a retry."""
    if not request_id:
        return uuid.uuid4()
    return uuid.uuid5(EVENTS_NAMESPACE, f"{app_id}\x1fhistory-job\x1f{request_id}")


class HistoryImports:
    def __init__(
        self,
        jobs: HistoryJobs,
        staging: HistoryStaging,
        log: PartitionedLog,
        limits: Limits,
        clock_us: Callable[[], int],
        on_finished: Callable[[], None] = lambda: None,
        sealer: Sealer | None = None,
    ) -> None:
        """`sealer`: seals personal fields before events are staged (never staged clear)."""
        self._sealer = sealer
        self._jobs = jobs
        self._staging = staging
        self._log = log
        self._limits = limits
        self._clock_us = clock_us
        self._on_finished = on_finished

    def start(self, app_id: str, request_id: str, requested_by: str, peer: str) -> Job:
        """A new staging job (JobConflict while another job of the app runs)."""
        return self._jobs.create(app_id, job_id_for(app_id, request_id), requested_by, peer)

    def get(self, app_id: str, job_id: uuid.UUID) -> Job | None:
        return self._jobs.get(app_id, job_id)

    def recent(
        self, app_id: str, limit: int, after: tuple[datetime, uuid.UUID] | None
    ) -> list[Job]:
        return self._jobs.recent(app_id, limit, after)

    def finish(self, app_id: str, job_id: uuid.UUID) -> Job | None:
        job = self._jobs.finish(app_id, job_id)
        if job is not None:
            self._on_finished()
        return job

    def cancel(self, app_id: str, job_id: uuid.UUID) -> Job | None:
        return self._jobs.cancel(app_id, job_id)

    def upload(
        self,
        app_id: str,
        job_id: uuid.UUID,
        events: Sequence[EventDraft],
        identifies: Sequence[IdentifyDraft],
        event_records: Sequence[int] = (),
        identify_records: Sequence[int] = (),
    ) -> Uploaded | None:
        """Judge and stage one upload (None: no such job of the app; JobRefused: the job
        no longer stages). Record lists must have passed `check_records`."""
        job = self._jobs.get(app_id, job_id)
        if job is None:
            return None
        check_upload(str(job_id), job.state)
        now = self._clock_us()
        event_problems, identify_problems = judge_upload(
            events, identifies, event_records, identify_records, now, self._limits
        )
        mark = str(job_id)
        built: list[Any] = [
            None if problems else tracked_event(app_id, draft, now, history_job=mark)
            for draft, problems in zip(events, event_problems, strict=True)
        ]
        built += [
            None if problems else identified_event(app_id, draft, now, history_job=mark)
            for draft, problems in zip(identifies, identify_problems, strict=True)
        ]
        if self._sealer is not None:
            built = self._sealer.seal_all(built)
        problems = [*event_problems, *identify_problems]
        outcomes = self._stage(app_id, job_id, built, problems)
        if outcomes is None:
            return None
        job, results = outcomes
        return Uploaded(job, results[: len(events)], results[len(events) :])

    def _stage(
        self, app_id: str, job_id: uuid.UUID, built: list[Any], problems: list[list[Violation]]
    ) -> tuple[Job, list[ItemOutcome]] | None:
        results: list[ItemOutcome | None] = [
            ItemOutcome("rejected", violations=tuple(found)) if found else None
            for found in problems
        ]
        in_log = self._in_log([e.originator_id for e in built if e is not None])
        to_stage: list[ToStage] = []
        slots: list[int] = []
        seen: set[uuid.UUID] = set()
        for index, event in enumerate(built):
            if event is None:
                continue
            log_id = event.originator_id
            if log_id in in_log or log_id in seen:
                results[index] = ItemOutcome("duplicate", in_log.get(log_id, 0))
                continue
            seen.add(log_id)
            rank = IDENTIFY_RANK if isinstance(event, UserIdentified) else TRACK_RANK
            stored = self._log.encode(event)
            to_stage.append(
                ToStage(stored, event.event_time_us, rank, event.user_id, event.anonymous_id)
            )
            slots.append(index)
        rejected = sum(1 for found in problems if found)
        duplicates = sum(1 for r in results if r is not None and r.status == "duplicate")
        tally = Tally(received=len(built), rejected=rejected, duplicates=duplicates)
        staged = self._staging.stage(app_id, job_id, to_stage, tally)
        if staged is None:
            return None
        job, inserted = staged
        for index, item in zip(slots, to_stage, strict=True):
            fresh = item.stored.originator_id in inserted
            results[index] = ItemOutcome("accepted" if fresh else "duplicate")
        return job, [r for r in results if r is not None]

    def _in_log(self, ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
        """The positions of those ids any partition holds."""
        found: dict[uuid.UUID, int] = {}
        if not ids:
            return found
        for partition in range(self._log.partitions):
            held = self._log.recorder(partition).first_positions(ids)
            found.update({k: encode_position(partition, v) for k, v in held.items()})  # type: ignore[misc]
        return found
