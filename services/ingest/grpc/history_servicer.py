"""HistoryImportService: translate requests, judge what the use cases do not, map errors.

Registered unchecked by the common guard (as IngestService): an upload answers each item
on its own, so the text rule is applied per item by ingest's validation, and the few
other fields (job ids, request ids, page tokens) are judged here.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import grpc
import psycopg
import structlog
from cohortflow.ingest.v1 import history_pb2, history_pb2_grpc
from eventsourcing.persistence import PersistenceError

from services.common.grpc.auth import current_app_id
from services.common.grpc.errors import (
    FieldViolation,
    abort,
    failed_precondition,
    invalid_argument,
    not_found,
    unavailable,
)
from services.common.grpc.paging import BadPageToken, decode_token, encode_token, page_size
from services.common.text import name_problem, text_problem
from services.ingest.adapters.history_jobs import Job, JobConflict
from services.ingest.domain.history_job import JobRefused
from services.ingest.domain.history_upload import check_records
from services.ingest.domain.model import Violation
from services.ingest.grpc import convert
from services.ingest.grpc.history_convert import job_pb, result_pb
from services.ingest.history_imports import HistoryImports

T = TypeVar("T")
_log = structlog.get_logger("ingest.history")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TOKEN_FIELDS = {"created_us": int, "job_id": str}
MAX_REQUEST_ID = 128
MAX_REQUESTED_BY = 256


def _job_not_found(job_id: str) -> grpc.Status:
    return not_found(
        f"no history import {job_id!r} in this app",
        reason="HISTORY_IMPORT_NOT_FOUND",
        resource_type="history_import",
        resource_name=job_id,
    )


class HistoryImportServicer(history_pb2_grpc.HistoryImportServiceServicer):
    def __init__(self, imports: HistoryImports, *, max_items_per_call: int = 1000) -> None:
        self._imports = imports
        self._max_items = max_items_per_call

    async def _run(
        self, context: grpc.aio.ServicerContext, work: Callable[..., T], *args: Any
    ) -> T:
        """`work(*args)` on a worker thread; the state machine's refusals and the
        database's unavailability become their statuses."""
        try:
            return await asyncio.to_thread(work, *args)
        except JobRefused as refused:
            await abort(context, failed_precondition(str(refused), "HISTORY_IMPORT_STATE"))
        except JobConflict as conflict:
            await abort(context, _running(conflict.running))
        except (OSError, PersistenceError, psycopg.Error) as error:
            _log.warning("history import call failed", error=repr(error))
            await abort(context, unavailable("the database is unavailable; retry"))

    async def _job_id(self, context: grpc.aio.ServicerContext, text: str) -> uuid.UUID:
        problem = ""
        if not text:
            problem = "is required: the job_id StartHistoryImport returned"
        else:
            try:
                return uuid.UUID(text)
            except ValueError:
                problem = "is not a job id returned by StartHistoryImport"
        await abort(context, invalid_argument([FieldViolation("job_id", problem)]))

    async def StartHistoryImport(
        self, request: history_pb2.StartHistoryImportRequest, context: grpc.aio.ServicerContext
    ) -> history_pb2.StartHistoryImportResponse:
        problems = []
        if len(request.request_id) > MAX_REQUEST_ID:
            problems.append(FieldViolation("request_id", f"at most {MAX_REQUEST_ID} characters"))
        elif problem := name_problem(request.request_id):
            problems.append(FieldViolation("request_id", problem))
        if len(request.requested_by) > MAX_REQUESTED_BY:
            problems.append(
                FieldViolation("requested_by", f"at most {MAX_REQUESTED_BY} characters")
            )
        elif problem := text_problem(request.requested_by):
            problems.append(FieldViolation("requested_by", problem))
        if problems:
            await abort(context, invalid_argument(problems))
        job = await self._run(
            context,
            self._imports.start,
            current_app_id(),
            request.request_id,
            request.requested_by,
            context.peer() or "",
        )
        return history_pb2.StartHistoryImportResponse(job=job_pb(job))

    async def UploadHistory(
        self, request: history_pb2.UploadHistoryRequest, context: grpc.aio.ServicerContext
    ) -> history_pb2.UploadHistoryResponse:
        job_id = await self._job_id(context, request.job_id)
        count = len(request.events) + len(request.identifies)
        problems = check_records(
            request.event_records,
            len(request.events),
            request.identify_records,
            len(request.identifies),
        )
        if count == 0:
            problems.append(Violation("events", "send at least one event or identify"))
        elif count > self._max_items:
            problems.append(
                Violation(
                    "events",
                    f"at most {self._max_items} events and identifies per call, got {count}",
                )
            )
        if problems:
            await abort(context, invalid_argument(problems))
        uploaded = await self._run(
            context,
            self._imports.upload,
            current_app_id(),
            job_id,
            [convert.event_draft(e) for e in request.events],
            [convert.identify_draft(i) for i in request.identifies],
            list(request.event_records),
            list(request.identify_records),
        )
        if uploaded is None:
            await abort(context, _job_not_found(request.job_id))
        return history_pb2.UploadHistoryResponse(
            event_results=[
                result_pb(e.event_id, o)
                for e, o in zip(request.events, uploaded.events, strict=True)
            ],
            identify_results=[
                result_pb(i.event_id, o)
                for i, o in zip(request.identifies, uploaded.identifies, strict=True)
            ],
            job=job_pb(uploaded.job),
        )

    async def FinishHistoryImport(
        self, request: history_pb2.FinishHistoryImportRequest, context: grpc.aio.ServicerContext
    ) -> history_pb2.FinishHistoryImportResponse:
        job = await self._one_job(context, request.job_id, self._imports.finish)
        return history_pb2.FinishHistoryImportResponse(job=job)

    async def CancelHistoryImport(
        self, request: history_pb2.CancelHistoryImportRequest, context: grpc.aio.ServicerContext
    ) -> history_pb2.CancelHistoryImportResponse:
        job = await self._one_job(context, request.job_id, self._imports.cancel)
        return history_pb2.CancelHistoryImportResponse(job=job)

    async def GetHistoryImport(
        self, request: history_pb2.GetHistoryImportRequest, context: grpc.aio.ServicerContext
    ) -> history_pb2.GetHistoryImportResponse:
        job = await self._one_job(context, request.job_id, self._imports.get)
        return history_pb2.GetHistoryImportResponse(job=job)

    async def _one_job(
        self,
        context: grpc.aio.ServicerContext,
        text: str,
        work: Callable[[str, uuid.UUID], Job | None],
    ) -> history_pb2.HistoryImport:
        """`work(app, job id)` on the caller's job named by `text`, as a proto."""
        job_id = await self._job_id(context, text)
        job = await self._run(context, work, current_app_id(), job_id)
        if job is None:
            await abort(context, _job_not_found(text))
        return job_pb(job)

    async def ListHistoryImports(
        self, request: history_pb2.ListHistoryImportsRequest, context: grpc.aio.ServicerContext
    ) -> history_pb2.ListHistoryImportsResponse:
        after = None
        try:
            cursor = decode_token(request.page_token, _TOKEN_FIELDS)
            if cursor is not None:
                moment = _EPOCH + timedelta(microseconds=cursor["created_us"])
                after = (moment, uuid.UUID(cursor["job_id"]))
        except (BadPageToken, ValueError, OverflowError):
            problem = FieldViolation("page_token", "not a page token returned by this API")
            await abort(context, invalid_argument([problem]))
        size = page_size(request.page_size)
        jobs = await self._run(context, self._imports.recent, current_app_id(), size + 1, after)
        token = ""
        if len(jobs) > size:
            last = jobs[size - 1]
            created_us = (last.created_at - _EPOCH) // timedelta(microseconds=1)
            token = encode_token({"created_us": created_us, "job_id": str(last.job_id)})
        now = datetime.now(UTC)
        return history_pb2.ListHistoryImportsResponse(
            jobs=[job_pb(job, now) for job in jobs[:size]], next_page_token=token
        )


def _running(job: Job) -> grpc.Status:
    started = job.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return failed_precondition(
        f"history import {job.job_id} of this app is {job.state.value} (started {started});"
        " only one runs at a time: wait for it, or cancel it while it stages",
        "HISTORY_IMPORT_RUNNING",
    )
