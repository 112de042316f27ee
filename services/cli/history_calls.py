"""The calls of `cohortflow import --history`: HistoryImportService on ingest, and a
projector read that says how far the projector has folded.

Uploads and the job calls retry transient failures (their items carry event ids, the
start a request id; Finish and Cancel answer a repeat with the job as it is).
"""

from __future__ import annotations

import grpc
from cohortflow.ingest.v1 import history_pb2, history_pb2_grpc, ingest_pb2
from cohortflow.profiles.v1 import profiles_pb2, profiles_pb2_grpc

from services.cli.client import CliError, Connection, describe_rpc_error

DEADLINE_S = 120
# How long one "has the projector folded this position?" question waits.
FOLD_QUESTION_S = 2.0


class HistoryCalls:
    """HistoryImportService over one connection to ingest."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._stub = history_pb2_grpc.HistoryImportServiceStub(conn.channel)

    async def start(self, request_id: str, requested_by: str) -> history_pb2.HistoryImport:
        request = history_pb2.StartHistoryImportRequest(
            request_id=request_id, requested_by=requested_by
        )
        reply = await self._conn.unary(
            self._stub.StartHistoryImport, request, deadline_s=DEADLINE_S, idempotent=True
        )
        return reply.job

    async def upload(
        self, request: history_pb2.UploadHistoryRequest
    ) -> history_pb2.UploadHistoryResponse:
        return await self._conn.unary(
            self._stub.UploadHistory, request, deadline_s=DEADLINE_S, idempotent=True
        )

    async def finish(self, job_id: str) -> history_pb2.HistoryImport:
        request = history_pb2.FinishHistoryImportRequest(job_id=job_id)
        reply = await self._conn.unary(
            self._stub.FinishHistoryImport, request, deadline_s=DEADLINE_S, idempotent=True
        )
        return reply.job

    async def cancel(self, job_id: str) -> history_pb2.HistoryImport:
        request = history_pb2.CancelHistoryImportRequest(job_id=job_id)
        reply = await self._conn.unary(
            self._stub.CancelHistoryImport, request, deadline_s=DEADLINE_S, idempotent=True
        )
        return reply.job

    async def get(self, job_id: str) -> history_pb2.HistoryImport:
        request = history_pb2.GetHistoryImportRequest(job_id=job_id)
        reply = await self._conn.unary(
            self._stub.GetHistoryImport, request, deadline_s=DEADLINE_S, idempotent=True
        )
        return reply.job


class FoldCalls:
    """How far the projector has folded, through a read it serves anyway (the lifecycle
    summary): its position, and whether it has reached a given one (`min_position`)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._stub = profiles_pb2_grpc.ProfileServiceStub(conn.channel)

    async def position(self) -> int:
        request = profiles_pb2.GetLifecycleSummaryRequest()
        reply = await self._conn.unary(
            self._stub.GetLifecycleSummary, request, deadline_s=DEADLINE_S, idempotent=True
        )
        return int(reply.position)

    async def reached(self, position: int) -> bool:
        """Whether the projector has folded `position` (asking for FOLD_QUESTION_S)."""
        request = profiles_pb2.GetLifecycleSummaryRequest(min_position=position)
        try:
            await self._stub.GetLifecycleSummary(
                request, metadata=self._conn.target.metadata(), timeout=FOLD_QUESTION_S
            )
        except grpc.aio.AioRpcError as error:
            # "not yet": the projector's own refusal, or our question's deadline.
            if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED or (
                error.code() == grpc.StatusCode.UNAVAILABLE and "not yet" in (error.details() or "")
            ):
                return False
            raise CliError(
                describe_rpc_error(error, self._conn.service, self._conn.address)
            ) from None
        return True


def results_of(reply: history_pb2.UploadHistoryResponse) -> list[ingest_pb2.EventResult]:
    """Every item's result: events, then Identify calls, in request order."""
    return [*reply.event_results, *reply.identify_results]
