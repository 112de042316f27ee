"""The rate and time left a job shows while ingest appends it."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from services.ingest.adapters.history_jobs import Job
from services.ingest.domain.history_chunks import AppendCursor
from services.ingest.domain.history_job import JobState
from services.ingest.grpc.history_convert import job_pb, rate_and_remaining

FINISHED = datetime(2026, 1, 1, tzinfo=UTC)
JOB = Job(
    job_id=uuid.uuid4(),
    app_id="shop",
    state=JobState.APPENDING,
    requested_by="me",
    peer="ipv4:127.0.0.1:1",
    failure_reason="",
    last_error="",
    created_at=FINISHED - timedelta(minutes=5),
    finish_requested_at=FINISHED,
    ended_at=None,
    received=1000,
    staged=1000,
    duplicates=0,
    rejected=0,
    processed=250,
    appended=250,
    first_event_us=1,
    last_event_us=2,
    last_tick_us=None,
    cursor=AppendCursor(),
    started_positions=[1],
    finished_positions=[],
)


def test_rate_is_events_passed_since_finish_and_time_left_follows_from_it() -> None:
    rate, left = rate_and_remaining(JOB, FINISHED + timedelta(seconds=10))
    assert rate == 25.0 and left == 30.0
    shown = job_pb(JOB, FINISHED + timedelta(seconds=10))
    assert shown.append_rate == 25.0 and shown.estimated_remaining.seconds == 30


def test_no_rate_before_anything_passed_nor_once_appending_ended() -> None:
    assert rate_and_remaining(replace(JOB, processed=0), FINISHED) == (0.0, None)
    done = replace(JOB, state=JobState.DONE, processed=1000)
    assert rate_and_remaining(done, FINISHED + timedelta(seconds=10)) == (0.0, None)
    assert not job_pb(done).HasField("estimated_remaining")
