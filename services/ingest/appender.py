"""Micro-batching appends: concurrent calls share event-store transactions.

Every call's events are queued; a flush takes whatever is queued (bounded in
events and bytes) and commits it in one transaction on a worker thread. While
a flush runs, new calls queue up, so batches grow with load and latency stays
one transaction when idle. A call returns only after all its events committed.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from eventsourcing.persistence import StoredEvent

from services.common.readiness import Check
from services.eventlog.store import AppendOutcome, OriginatorId
from services.ingest import metrics

# Bytes counted per row beyond its state (ids, topic, tuple overhead) when bounding batches.
_ROW_OVERHEAD = 96


class LogWriter(Protocol):
    def encode(self, event: Any) -> StoredEvent: ...

    def append_new(self, stored: Sequence[StoredEvent]) -> AppendOutcome: ...


@dataclass(frozen=True)
class Appended:
    position: int
    duplicate: bool


class _Call:
    """One append() call: its results fill in as its chunks commit."""

    __slots__ = ("future", "pending", "results")

    def __init__(self, size: int, chunks: int, future: asyncio.Future[list[Appended]]) -> None:
        self.results: list[Appended | None] = [None] * size
        self.pending = chunks
        self.future = future


@dataclass
class _Chunk:
    call: _Call
    offset: int
    stored: list[StoredEvent]
    size: int = field(default=0)


class Appender:
    def __init__(
        self,
        log: LogWriter,
        *,
        max_events: int = 2000,
        max_bytes: int = 2_000_000,
        max_inflight: int = 2,
        health: Check | None = None,
    ) -> None:
        """`health`, if given, hears of every transaction: committed or failed."""
        self._log = log
        self._health = health
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._max_inflight = max_inflight
        self._queue: deque[_Chunk] = deque()
        self._inflight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._executor = ThreadPoolExecutor(max_inflight, thread_name_prefix="append")

    async def append(self, events: Sequence[Any]) -> list[Appended]:
        """Store events (once each) and return their positions, in order."""
        if not events:
            return []
        encode = self._log.encode
        stored = [encode(event) for event in events]
        future: asyncio.Future[list[Appended]] = asyncio.get_running_loop().create_future()
        chunks: list[_Chunk] = []
        call = _Call(len(stored), 0, future)
        current = _Chunk(call, 0, [])
        for index, item in enumerate(stored):
            item_size = len(item.state) + _ROW_OVERHEAD
            if current.stored and (
                len(current.stored) >= self._max_events
                or current.size + item_size > self._max_bytes
            ):
                chunks.append(current)
                current = _Chunk(call, index, [])
            current.stored.append(item)
            current.size += item_size
        chunks.append(current)
        call.pending = len(chunks)
        self._queue.extend(chunks)
        self._idle.clear()
        self._kick()
        return await future

    def _kick(self) -> None:
        while self._queue and self._inflight < self._max_inflight:
            batch = self._take()
            self._inflight += 1
            task = asyncio.get_running_loop().create_task(self._flush(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self) -> list[_Chunk]:
        batch = [self._queue.popleft()]
        events, size = len(batch[0].stored), batch[0].size
        while self._queue:
            chunk = self._queue[0]
            if events + len(chunk.stored) > self._max_events or size + chunk.size > self._max_bytes:
                break
            batch.append(self._queue.popleft())
            events += len(chunk.stored)
            size += chunk.size
        return batch

    async def _flush(self, batch: list[_Chunk]) -> None:
        try:
            seen: set[OriginatorId] = set()
            unique: list[StoredEvent] = []
            for chunk in batch:
                for item in chunk.stored:
                    if item.originator_id not in seen:
                        seen.add(item.originator_id)
                        unique.append(item)
            started = time.perf_counter()
            outcome = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._log.append_new, unique
            )
            metrics.APPEND_SECONDS.observe(time.perf_counter() - started)
            if self._health is not None:
                self._health.passed()
            metrics.APPEND_BATCH_SIZE.observe(len(unique))
            # The first occurrence of an id in this batch is the one inserted;
            # any later occurrence (in this batch) is a duplicate of it.
            first_seen: set[OriginatorId] = set()
            for chunk in batch:
                results = chunk.call.results
                for offset, item in enumerate(chunk.stored, chunk.offset):
                    position, duplicate = outcome.position(item.originator_id)
                    if item.originator_id in first_seen:
                        duplicate = True
                    else:
                        first_seen.add(item.originator_id)
                    results[offset] = Appended(position, duplicate)
                self._chunk_done(chunk, None)
        except Exception as error:
            metrics.APPEND_FAILURES.inc()
            if self._health is not None:
                self._health.failed(error)
            for chunk in batch:
                self._chunk_done(chunk, error)
        finally:
            self._inflight -= 1
            if self._queue:
                self._kick()
            elif self._inflight == 0:
                self._idle.set()

    @staticmethod
    def _chunk_done(chunk: _Chunk, error: Exception | None) -> None:
        call = chunk.call
        call.pending -= 1
        if call.future.done():
            return
        if error is not None:
            call.future.set_exception(error)
        elif call.pending == 0:
            call.future.set_result(call.results)  # type: ignore[arg-type]

    async def drain(self) -> None:
        """Wait until everything queued so far is committed (or failed)."""
        await self._idle.wait()

    async def close(self) -> None:
        await self.drain()
        self._executor.shutdown(wait=True)
