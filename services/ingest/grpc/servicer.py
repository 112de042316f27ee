"""IngestService: validate, append (micro-batched, idempotent), answer with positions."""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc
import psycopg
import structlog
from cohortflow.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from eventsourcing.persistence import PersistenceError as EventStoreError

from services.common.grpc.auth import current_app_id
from services.common.grpc.errors import abort, invalid_argument, unavailable
from services.eventlog.events import EventTracked
from services.ingest import metrics
from services.ingest.appender import Appended
from services.ingest.domain.build import identified_event, tracked_event
from services.ingest.domain.model import Limits, Violation
from services.ingest.domain.validation import check_event, check_identify
from services.ingest.grpc import convert
from services.ingest.routing import PartitionedAppender

_log = structlog.get_logger("ingest")


def wall_clock_us() -> int:
    return time.time_ns() // 1000


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    def __init__(
        self,
        appender: PartitionedAppender,
        limits: Limits,
        *,
        max_events_per_call: int = 1000,
        clock_us: Callable[[], int] = wall_clock_us,
    ) -> None:
        self._appender = appender
        self._limits = limits
        self._max_events_per_call = max_events_per_call
        self._clock_us = clock_us

    async def _append(self, context: grpc.aio.ServicerContext, events: list) -> list[Appended]:
        try:
            return await self._appender.append(events)
        except (OSError, EventStoreError, psycopg.Error) as error:
            _log.warning("append failed", error=repr(error))
            await abort(
                context,
                unavailable("the event store is unavailable; retry with the same event_ids"),
            )

    async def Track(
        self, request: ingest_pb2.TrackRequest, context: grpc.aio.ServicerContext
    ) -> ingest_pb2.TrackResponse:
        app_id = current_app_id()
        now = self._clock_us()
        draft = convert.event_draft(request.event)
        violations = check_event(draft, now, self._limits)
        if violations:
            metrics.EVENTS.labels("rejected", "track").inc()
            await abort(context, invalid_argument(violations, prefix="event."))
        (appended,) = await self._append(context, [tracked_event(app_id, draft, now)])
        metrics.EVENTS.labels("duplicate" if appended.duplicate else "accepted", "track").inc()
        return ingest_pb2.TrackResponse(
            result=convert.accepted(draft.event_id, appended.position, appended.duplicate)
        )

    async def TrackBatch(
        self, request: ingest_pb2.TrackBatchRequest, context: grpc.aio.ServicerContext
    ) -> ingest_pb2.TrackBatchResponse:
        app_id = current_app_id()
        count = len(request.events)
        if count == 0:
            await abort(context, invalid_argument([Violation("events", "send at least one event")]))
        if count > self._max_events_per_call:
            await abort(
                context,
                invalid_argument(
                    [
                        Violation(
                            "events",
                            f"at most {self._max_events_per_call} events per call, got {count}",
                        )
                    ]
                ),
            )
        metrics.CALL_BATCH_SIZE.observe(count)
        now = self._clock_us()
        results: list[ingest_pb2.EventResult | None] = [None] * count
        to_store: list[EventTracked] = []
        slots: list[int] = []
        for index, message in enumerate(request.events):
            draft = convert.event_draft(message)
            violations = check_event(draft, now, self._limits)
            if violations:
                results[index] = convert.rejected(draft.event_id, violations)
                continue
            to_store.append(tracked_event(app_id, draft, now))
            slots.append(index)
        rejected = count - len(slots)
        if rejected:
            metrics.EVENTS.labels("rejected", "track").inc(rejected)
        appended = await self._append(context, to_store)
        duplicates = 0
        for index, stored, outcome in zip(slots, to_store, appended, strict=True):
            duplicates += outcome.duplicate
            results[index] = convert.accepted(stored.event_id, outcome.position, outcome.duplicate)
        metrics.EVENTS.labels("accepted", "track").inc(len(slots) - duplicates)
        if duplicates:
            metrics.EVENTS.labels("duplicate", "track").inc(duplicates)
        return ingest_pb2.TrackBatchResponse(results=[r for r in results if r is not None])

    async def Identify(
        self, request: ingest_pb2.IdentifyRequest, context: grpc.aio.ServicerContext
    ) -> ingest_pb2.IdentifyResponse:
        app_id = current_app_id()
        now = self._clock_us()
        draft = convert.identify_draft(request)
        violations = check_identify(draft, now, self._limits)
        if violations:
            metrics.EVENTS.labels("rejected", "identify").inc()
            await abort(context, invalid_argument(violations))
        (appended,) = await self._append(context, [identified_event(app_id, draft, now)])
        metrics.EVENTS.labels("duplicate" if appended.duplicate else "accepted", "identify").inc()
        return ingest_pb2.IdentifyResponse(
            result=convert.accepted(draft.event_id, appended.position, appended.duplicate)
        )
