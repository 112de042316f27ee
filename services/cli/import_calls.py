"""The ingest calls of `cohortflow import`: TrackBatch for events, Identify for the rest.

Both retry what is worth retrying (the event ids make it safe). An Identify that ingest
refuses as INVALID_ARGUMENT is answered like a rejected TrackBatch event, a REJECTED
result with its field violations, so the import reports that line and goes on.
"""

from __future__ import annotations

from typing import Any

import grpc
from cohortflow.ingest.v1 import ingest_pb2, ingest_pb2_grpc

from services.cli.client import Connection
from services.common.grpc.errors import bad_request_of

DEADLINE_S = 120
RETRIES = 5


class IngestCalls:
    """TrackBatch and Identify over one connection to ingest."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._stub = ingest_pb2_grpc.IngestServiceStub(conn.channel)

    async def track_batch(self, events: list[ingest_pb2.Event]) -> list[ingest_pb2.EventResult]:
        request = ingest_pb2.TrackBatchRequest(events=events)
        reply = await self._conn.unary(
            self._stub.TrackBatch, request, deadline_s=DEADLINE_S, retries=RETRIES
        )
        return list(reply.results)

    async def identify(self, request: ingest_pb2.IdentifyRequest) -> ingest_pb2.EventResult:
        return await self._conn.unary(
            self._identify_once, request, deadline_s=DEADLINE_S, retries=RETRIES
        )

    async def _identify_once(
        self, request: ingest_pb2.IdentifyRequest, **call: Any
    ) -> ingest_pb2.EventResult:
        """One Identify call (`call`: its metadata and timeout)."""
        try:
            reply = await self._stub.Identify(request, **call)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.INVALID_ARGUMENT:
                raise
            found = bad_request_of(error) or [("", error.details() or "invalid")]
            return ingest_pb2.EventResult(
                event_id=request.event_id,
                status=ingest_pb2.EventResult.STATUS_REJECTED,
                violations=[
                    ingest_pb2.FieldViolation(field=field, description=why) for field, why in found
                ],
            )
        return reply.result
