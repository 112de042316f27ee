"""Builders for ingest requests and a small client wrapper for tests."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import grpc
from cohortflow.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from cohortflow.types.v1 import types_pb2

_counter = itertools.count()


def unique_id(prefix: str = "evt") -> str:
    return f"{prefix}-{next(_counter)}-{uuid.uuid4().hex[:8]}"


def value(v: Any) -> types_pb2.Value:
    if isinstance(v, bool):
        return types_pb2.Value(bool_value=v)
    if isinstance(v, int | float):
        return types_pb2.Value(number_value=float(v))
    if isinstance(v, list):
        return types_pb2.Value(list_value=types_pb2.ValueList(values=[value(x) for x in v]))
    return types_pb2.Value(string_value=str(v))


def event(
    name: str = "Opened",
    *,
    event_id: str | None = None,
    user_id: str = "alice",
    properties: dict[str, Any] | None = None,
    **fields: Any,
) -> ingest_pb2.Event:
    return ingest_pb2.Event(
        event_id=event_id or unique_id(),
        user_id=user_id,
        name=name,
        properties={k: value(v) for k, v in (properties or {}).items()},
        **fields,
    )


def auth(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


class IngestClient:
    """Async stub bound to one API key."""

    def __init__(self, channel: grpc.aio.Channel, key: str) -> None:
        self.stub = ingest_pb2_grpc.IngestServiceStub(channel)
        self.metadata = auth(key)

    async def track(self, ev: ingest_pb2.Event) -> ingest_pb2.EventResult:
        response = await self.stub.Track(ingest_pb2.TrackRequest(event=ev), metadata=self.metadata)
        return response.result

    async def track_batch(self, events: list[ingest_pb2.Event]) -> list[ingest_pb2.EventResult]:
        response = await self.stub.TrackBatch(
            ingest_pb2.TrackBatchRequest(events=events), metadata=self.metadata
        )
        return list(response.results)

    async def identify(self, **fields: Any) -> ingest_pb2.EventResult:
        fields.setdefault("event_id", unique_id("idn"))
        response = await self.stub.Identify(
            ingest_pb2.IdentifyRequest(**fields), metadata=self.metadata
        )
        return response.result


ACCEPTED = ingest_pb2.EventResult.STATUS_ACCEPTED
DUPLICATE = ingest_pb2.EventResult.STATUS_DUPLICATE
REJECTED = ingest_pb2.EventResult.STATUS_REJECTED
