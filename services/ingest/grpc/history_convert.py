"""Translate history import jobs and outcomes into protos. No judgement here."""

from __future__ import annotations

from datetime import UTC, datetime

from cohortflow.ingest.v1 import history_pb2, ingest_pb2
from google.protobuf import duration_pb2, timestamp_pb2

from services.ingest.adapters.history_jobs import Job
from services.ingest.domain.history_job import JobState
from services.ingest.history_imports import ItemOutcome

_STATES = {
    JobState.STAGING: history_pb2.HistoryImport.STATE_STAGING,
    JobState.APPENDING: history_pb2.HistoryImport.STATE_APPENDING,
    JobState.DONE: history_pb2.HistoryImport.STATE_DONE,
    JobState.FAILED: history_pb2.HistoryImport.STATE_FAILED,
    JobState.CANCELLED: history_pb2.HistoryImport.STATE_CANCELLED,
}
_STATUS = {
    "accepted": ingest_pb2.EventResult.STATUS_ACCEPTED,
    "duplicate": ingest_pb2.EventResult.STATUS_DUPLICATE,
    "rejected": ingest_pb2.EventResult.STATUS_REJECTED,
}


def _time(moment: datetime | None) -> timestamp_pb2.Timestamp | None:
    if moment is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(moment)
    return ts


def _time_us(us: int | None) -> timestamp_pb2.Timestamp | None:
    if us is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromMicroseconds(us)
    return ts


def rate_and_remaining(job: Job, now: datetime) -> tuple[float, float | None]:
    """Staged events passed per second since Finish, and the seconds left at that rate."""
    if job.state is not JobState.APPENDING or job.finish_requested_at is None:
        return 0.0, None
    elapsed = (now - job.finish_requested_at).total_seconds()
    if elapsed <= 0 or job.processed <= 0:
        return 0.0, None
    rate = job.processed / elapsed
    return rate, max(0, job.staged - job.processed) / rate


def job_pb(job: Job, now: datetime | None = None) -> history_pb2.HistoryImport:
    rate, remaining = rate_and_remaining(job, now or datetime.now(UTC))
    message = history_pb2.HistoryImport(
        job_id=str(job.job_id),
        state=_STATES[job.state],
        failure_reason=job.failure_reason,
        requested_by=job.requested_by,
        peer=job.peer,
        create_time=_time(job.created_at),
        finish_time=_time(job.finish_requested_at),
        end_time=_time(job.ended_at),
        received_count=job.received,
        staged_count=job.staged,
        duplicate_count=job.duplicates,
        rejected_count=job.rejected,
        processed_count=job.processed,
        appended_count=job.appended,
        first_event_time=_time_us(job.first_event_us),
        last_event_time=_time_us(job.last_event_us),
        clock_time=_time_us(job.cursor.last_tick_us),
        started_positions=job.started_positions,
        finished_positions=job.finished_positions,
        append_rate=rate,
        last_error=job.last_error,
    )
    if remaining is not None:
        message.estimated_remaining.CopyFrom(duration_pb2.Duration(seconds=round(remaining)))
    return message


def result_pb(event_id: str, outcome: ItemOutcome) -> ingest_pb2.EventResult:
    return ingest_pb2.EventResult(
        event_id=event_id,
        status=_STATUS[outcome.status],
        position=outcome.position,
        violations=[
            ingest_pb2.FieldViolation(field=v.field, description=v.description)
            for v in outcome.violations
        ],
    )
