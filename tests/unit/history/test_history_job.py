"""The job state machine: what each call may do in each state."""

from __future__ import annotations

import pytest

from services.ingest.domain.history_job import (
    JobRefused,
    JobState,
    after_cancel,
    after_finish,
    check_upload,
)


def test_only_a_staging_job_takes_uploads() -> None:
    check_upload("j", JobState.STAGING)
    for state in (JobState.APPENDING, JobState.DONE, JobState.FAILED, JobState.CANCELLED):
        with pytest.raises(JobRefused, match=f"j is {state.value}; it takes uploads only"):
            check_upload("j", state)


def test_finish_appends_what_was_staged_and_is_done_at_once_when_nothing_was() -> None:
    assert after_finish("j", JobState.STAGING, staged=3) is JobState.APPENDING
    assert after_finish("j", JobState.STAGING, staged=0) is JobState.DONE


def test_a_repeated_finish_answers_the_job_as_it_is() -> None:
    assert after_finish("j", JobState.APPENDING, staged=3) is JobState.APPENDING
    assert after_finish("j", JobState.DONE, staged=3) is JobState.DONE


def test_a_cancelled_or_failed_job_cannot_be_finished() -> None:
    for state in (JobState.CANCELLED, JobState.FAILED):
        with pytest.raises(JobRefused, match="only a staging job can be finished"):
            after_finish("j", state, staged=3)


def test_only_a_staging_job_can_be_cancelled_and_cancelling_again_is_harmless() -> None:
    assert after_cancel("j", JobState.STAGING) is JobState.CANCELLED
    assert after_cancel("j", JobState.CANCELLED) is JobState.CANCELLED
    for state in (JobState.APPENDING, JobState.DONE, JobState.FAILED):
        with pytest.raises(JobRefused, match="only a staging job can be cancelled"):
            after_cancel("j", state)


def test_running_means_staging_or_appending() -> None:
    assert {s for s in JobState if s.running} == {JobState.STAGING, JobState.APPENDING}
