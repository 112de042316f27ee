"""PrivacyService: judge the request, erase through the use case, answer what was erased."""

from __future__ import annotations

import asyncio

import grpc
import psycopg
import structlog
from cohortflow.ingest.v1 import privacy_pb2, privacy_pb2_grpc
from eventsourcing.persistence import PersistenceError
from google.protobuf import timestamp_pb2

from services.common.grpc.auth import current_app_id
from services.common.grpc.errors import FieldViolation, abort, invalid_argument, unavailable
from services.common.text import name_problem, text_problem
from services.eventlog.keyring import RequestReused
from services.ingest.erasures import Erased, Erasures
from services.ingest.grpc.history_servicer import MAX_REQUEST_ID, MAX_REQUESTED_BY

_log = structlog.get_logger("ingest.privacy")
MAX_USER_ID = 256  # as IngestService accepts them


def erase_problems(request: privacy_pb2.EraseUserRequest) -> list[FieldViolation]:
    problems = []
    if not request.user_id:
        problems.append(FieldViolation("user_id", "is required"))
    elif len(request.user_id) > MAX_USER_ID:
        problems.append(FieldViolation("user_id", f"at most {MAX_USER_ID} characters"))
    elif problem := name_problem(request.user_id):
        problems.append(FieldViolation("user_id", problem))
    if not request.requested_by.strip():
        problems.append(FieldViolation("requested_by", "is required: who asked for the erasure"))
    elif len(request.requested_by) > MAX_REQUESTED_BY:
        problems.append(FieldViolation("requested_by", f"at most {MAX_REQUESTED_BY} characters"))
    elif problem := text_problem(request.requested_by):
        problems.append(FieldViolation("requested_by", problem))
    if len(request.request_id) > MAX_REQUEST_ID:
        problems.append(FieldViolation("request_id", f"at most {MAX_REQUEST_ID} characters"))
    elif problem := name_problem(request.request_id):
        problems.append(FieldViolation("request_id", problem))
    return problems


class PrivacyServicer(privacy_pb2_grpc.PrivacyServiceServicer):
    def __init__(self, erasures: Erasures) -> None:
        self._erasures = erasures

    async def EraseUser(
        self, request: privacy_pb2.EraseUserRequest, context: grpc.aio.ServicerContext
    ) -> privacy_pb2.EraseUserResponse:
        problems = erase_problems(request)
        if problems:
            await abort(context, invalid_argument(problems))
        app_id = current_app_id()
        try:
            erased = await asyncio.to_thread(
                self._erasures.erase,
                app_id,
                request.user_id,
                request.requested_by.strip(),
                request.request_id,
            )
        except RequestReused as reused:
            await abort(context, invalid_argument([FieldViolation("request_id", str(reused))]))
        except (OSError, PersistenceError, psycopg.Error) as error:
            _log.warning("erasure failed", error=repr(error))
            await abort(context, unavailable("the database is unavailable; retry the same call"))
        _log.info(
            "user erased",
            app_id=app_id,
            request_id=erased.erasure.request_id,
            requested_by=erased.erasure.requested_by,
            keys_destroyed=len(erased.erasure.key_ids),
        )
        return response(erased)


def response(erased: Erased) -> privacy_pb2.EraseUserResponse:
    when = timestamp_pb2.Timestamp()
    when.FromDatetime(erased.erasure.requested_at)
    return privacy_pb2.EraseUserResponse(
        request_id=erased.erasure.request_id,
        erase_time=when,
        keys_destroyed=len(erased.erasure.key_ids),
        anonymous_ids=erased.anonymous_ids,
        position=erased.position,
    )
