"""The life of a history import job: what each call may do in each state.

    staging --Finish--> appending --(appender)--> done
       |  \\--Finish, nothing new staged--> done (no markers appended)
       \\--Cancel--> cancelled          appending --(error)--> failed

A job runs (staging or appending) one at a time per app. Uploads are taken while it
stages; Finish closes uploads and hands the job to the appender (repeating it answers the
job as it is); Cancel drops a staging job and its staged events. Once appending, a job
is no longer the client's to stop: its Started marker may be in the log, and only its
Finished marker takes the app out of history mode.
"""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    STAGING = "staging"
    APPENDING = "appending"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def running(self) -> bool:
        return self in RUNNING


RUNNING = frozenset({JobState.STAGING, JobState.APPENDING})


class JobRefused(Exception):
    """A call that the job's state does not allow (FAILED_PRECONDITION), with why."""


def check_upload(job_id: str, state: JobState) -> None:
    """Uploads go to a staging job only."""
    if state is not JobState.STAGING:
        msg = (
            f"history import {job_id} is {state.value}; it takes uploads only while staging"
            " (before FinishHistoryImport)"
        )
        raise JobRefused(msg)


def after_finish(job_id: str, state: JobState, staged: int) -> JobState:
    """The state Finish leaves a job in: appending, or done when it staged nothing new
    (a re-import of events the log already holds appends nothing, not even markers)."""
    if state is JobState.STAGING:
        return JobState.APPENDING if staged else JobState.DONE
    if state in (JobState.APPENDING, JobState.DONE):
        return state  # a repeated Finish: the job as it is
    msg = f"history import {job_id} is {state.value}; only a staging job can be finished"
    raise JobRefused(msg)


def after_cancel(job_id: str, state: JobState) -> JobState:
    """Cancel drops a staging job; a repeated Cancel answers the cancelled job."""
    if state in (JobState.STAGING, JobState.CANCELLED):
        return JobState.CANCELLED
    msg = (
        f"history import {job_id} is {state.value}; only a staging job can be cancelled"
        " (an appending one finishes on its own)"
    )
    raise JobRefused(msg)
