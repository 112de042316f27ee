"""OperationsService: what the projector could not do with an app's data (its quarantine)."""

from __future__ import annotations

import asyncio

import grpc
from cohortflow.operations.v1 import operations_pb2, operations_pb2_grpc
from google.protobuf import timestamp_pb2

from services.common.grpc.auth import current_app_id
from services.common.grpc.errors import FieldViolation, abort, invalid_argument
from services.common.grpc.paging import BadPageToken, decode_token, encode_token, page_size
from services.projector.adapters.quarantine import (
    FOLD_FAILED,
    REFUSED_BY_DATABASE,
    UNDECODABLE,
    UNSTORABLE_VALUE,
    Quarantined,
    QuarantineQueries,
)

_REASONS = {
    UNSTORABLE_VALUE: operations_pb2.QUARANTINE_REASON_UNSTORABLE_VALUE,
    REFUSED_BY_DATABASE: operations_pb2.QUARANTINE_REASON_REFUSED_BY_DATABASE,
    FOLD_FAILED: operations_pb2.QUARANTINE_REASON_FOLD_FAILED,
    UNDECODABLE: operations_pb2.QUARANTINE_REASON_UNDECODABLE,
}
_KINDS = {
    "track": operations_pb2.EVENT_KIND_TRACK,
    "identify": operations_pb2.EVENT_KIND_IDENTIFY,
    "segment": operations_pb2.EVENT_KIND_SEGMENT,
}


def _timestamp(us: int | None) -> timestamp_pb2.Timestamp | None:
    if us is None:
        return None
    moment = timestamp_pb2.Timestamp()
    moment.FromMicroseconds(us)
    return moment


def quarantined_pb(record: Quarantined) -> operations_pb2.QuarantinedEvent:
    return operations_pb2.QuarantinedEvent(
        position=record.position,
        kind=_KINDS.get(record.kind, operations_pb2.EVENT_KIND_UNSPECIFIED),
        event_id=record.event_id,
        user_id=record.user_id,
        anonymous_id=record.anonymous_id,
        event_name=record.event_name,
        segment_id=record.segment_id,
        event_time=_timestamp(record.event_time_us),
        reason=_REASONS.get(record.reason, operations_pb2.QUARANTINE_REASON_UNSPECIFIED),
        detail=record.detail,
        quarantine_time=_timestamp(record.quarantined_us),
    )


def _after(token: str) -> int:
    """The position a page token continues after (0 for none); BadPageToken if not ours."""
    cursor = decode_token(token, {"after": int})
    return 0 if cursor is None else int(cursor["after"])


class OperationsServicer(operations_pb2_grpc.OperationsServiceServicer):
    def __init__(self, queries: QuarantineQueries) -> None:
        self._queries = queries

    async def ListQuarantinedEvents(
        self,
        request: operations_pb2.ListQuarantinedEventsRequest,
        context: grpc.aio.ServicerContext,
    ) -> operations_pb2.ListQuarantinedEventsResponse:
        if request.page_size < 0:
            await abort(
                context, invalid_argument([FieldViolation("page_size", "must not be negative")])
            )
        try:
            after = _after(request.page_token)
        except BadPageToken as error:
            await abort(context, invalid_argument([FieldViolation("page_token", str(error))]))
        size = page_size(request.page_size)
        records = await asyncio.to_thread(self._queries.page, current_app_id(), after, size + 1)
        more = len(records) > size
        records = records[:size]
        return operations_pb2.ListQuarantinedEventsResponse(
            events=[quarantined_pb(r) for r in records],
            next_page_token=encode_token({"after": records[-1].position}) if more else "",
        )
