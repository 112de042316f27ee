"""History imports in tests: a client for HistoryImportService and the log read back."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import grpc
from cohortflow.ingest.v1 import history_pb2, history_pb2_grpc, ingest_pb2
from google.protobuf import timestamp_pb2

from services.eventlog.events import (
    AppClockTicked,
    EventTracked,
    HistoryImportFinished,
    HistoryImportStarted,
    UserIdentified,
)
from services.eventlog.keyring import Keyring
from services.eventlog.partitioned import open_partitioned_log
from services.eventlog.partitions import Deployment, encode_position
from services.eventlog.sealing import unseal_all
from services.ingest.domain.history_clock import IDENTIFY_RANK, TRACK_RANK, SortKey
from tests.support.ingest import auth

DONE = history_pb2.HistoryImport.STATE_DONE
STAGING = history_pb2.HistoryImport.STATE_STAGING


def at(us: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromMicroseconds(us)
    return ts


class HistoryClient:
    """HistoryImportService bound to one API key."""

    def __init__(self, channel: grpc.aio.Channel, key: str) -> None:
        self.stub = history_pb2_grpc.HistoryImportServiceStub(channel)
        self.metadata = auth(key)

    async def start(self, **fields: Any) -> history_pb2.HistoryImport:
        request = history_pb2.StartHistoryImportRequest(**fields)
        return (await self.stub.StartHistoryImport(request, metadata=self.metadata)).job

    async def upload(
        self,
        job_id: str,
        events: list[ingest_pb2.Event] = (),  # type: ignore[assignment]
        identifies: list[ingest_pb2.IdentifyRequest] = (),  # type: ignore[assignment]
        **fields: Any,
    ) -> history_pb2.UploadHistoryResponse:
        request = history_pb2.UploadHistoryRequest(
            job_id=job_id, events=events, identifies=identifies, **fields
        )
        return await self.stub.UploadHistory(request, metadata=self.metadata)

    async def finish(self, job_id: str) -> history_pb2.HistoryImport:
        request = history_pb2.FinishHistoryImportRequest(job_id=job_id)
        return (await self.stub.FinishHistoryImport(request, metadata=self.metadata)).job

    async def get(self, job_id: str) -> history_pb2.HistoryImport:
        request = history_pb2.GetHistoryImportRequest(job_id=job_id)
        return (await self.stub.GetHistoryImport(request, metadata=self.metadata)).job

    async def done(self, job_id: str) -> history_pb2.HistoryImport | None:
        """The job once it is done (None before: for `eventually`)."""
        job = await self.get(job_id)
        return job if job.state == DONE else None


@dataclass(frozen=True)
class Entry:
    """One event of a partition's log, decoded, with its position."""

    position: int
    event: Any

    @property
    def kind(self) -> str:
        return type(self.event).__name__

    @property
    def sort_key(self) -> SortKey:
        rank = IDENTIFY_RANK if isinstance(self.event, UserIdentified) else TRACK_RANK
        return (self.event.event_time_us, rank, self.event.originator_id)


def partition_logs(deployment: Deployment) -> list[list[Entry]]:
    """Every partition's log, decoded (personal fields unsealed), in log order."""
    log = open_partitioned_log(deployment, pool_size=1)
    keys = Keyring(log.home.log_recorder.datastore)
    try:
        out = []
        for partition in range(deployment.partitions):
            notes = log.recorder(partition).select_notifications(start=None, limit=1_000_000)
            events = unseal_all([log.mapper.to_domain_event(n) for n in notes], keys)
            out.append(
                [
                    Entry(encode_position(partition, n.id), event)
                    for n, event in zip(notes, events, strict=True)
                ]
            )
        return out
    finally:
        log.close()


def history_of(entries: list[Entry], job_id: str) -> list[Entry]:
    """A partition's entries from the job's Started marker to its Finished marker."""
    kinds = (HistoryImportStarted, HistoryImportFinished)
    marks = [
        i for i, e in enumerate(entries) if isinstance(e.event, kinds) and e.event.job_id == job_id
    ]
    assert len(marks) == 2, [e.kind for e in entries]
    return entries[marks[0] : marks[1] + 1]


def is_user_event(entry: Entry) -> bool:
    return isinstance(entry.event, EventTracked | UserIdentified)


def is_tick(entry: Entry) -> bool:
    return isinstance(entry.event, AppClockTicked)


def job_uuid(job: history_pb2.HistoryImport) -> uuid.UUID:
    return uuid.UUID(job.job_id)
