"""Stream parsed lines through TrackBatch: batches, several calls in flight, per-line results.

Pure of any terminal: the caller passes how to send a batch, where problem lines go and
what to do with progress, so the same engine serves `cohortflow import` and tests. Every
line read is counted once: sent (accepted, duplicate or rejected by ingest) or unreadable,
each bad one reported as `source:line: field: problem`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field

from cohortflow.ingest.v1 import ingest_pb2

from services.cli.client import CliError, first_failure
from services.cli.output import violations_text
from services.cli.records import FileProblem, LineProblem, Record, printable

SendBatch = Callable[[list[ingest_pb2.Event]], Awaitable[Sequence[ingest_pb2.EventResult]]]
REJECTED = ingest_pb2.EventResult.STATUS_REJECTED
DUPLICATE = ingest_pb2.EventResult.STATUS_DUPLICATE
# Most encoded event bytes in one call: under gRPC's usual 4 MiB limit of a request.
MAX_CALL_BYTES = 3 * 1024 * 1024


@dataclass
class ImportTally:
    """What became of the lines read so far."""

    lines: int = 0
    read: int = 0
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    unreadable: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def sent(self) -> int:
        return self.accepted + self.duplicate + self.rejected

    @property
    def failed(self) -> int:
        return self.rejected + self.unreadable

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def events_per_second(self) -> float:
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0


def rejection_message(source: str, line: int, result: ingest_pb2.EventResult) -> str:
    """One line for an event ingest rejected: where, every bad field, which event."""
    why = violations_text(result.violations) or "rejected"
    return printable(f"{source}:{line}: {why} (event_id {result.event_id})")


def _take(
    items: Iterator[Record | LineProblem], count: int, source: str
) -> list[Record | LineProblem]:
    out: list[Record | LineProblem] = []
    try:
        for item in items:
            out.append(item)
            if len(out) >= count:
                break
    except FileProblem as problem:
        raise CliError(printable(f"{source}:{problem.line}: {problem.reason}")) from None
    return out


def _too_big(line: int, size: int, max_call_bytes: int) -> LineProblem:
    reason = f"is {size:,} bytes as an event; one call carries at most {max_call_bytes:,}"
    return LineProblem(line, "", reason)


async def import_records(
    items: Iterator[Record | LineProblem],
    send: SendBatch,
    *,
    report: Callable[[str], None],
    source: str = "-",
    on_progress: Callable[[ImportTally], None] = lambda tally: None,
    batch_size: int = 1000,
    concurrency: int = 4,
    max_call_bytes: int = MAX_CALL_BYTES,
) -> ImportTally:
    """Send every record in batches of at most `batch_size` events and `max_call_bytes`,
    at most `concurrency` in flight; report each bad line (named `source:line`)."""
    tally = ImportTally()
    slots = asyncio.Semaphore(concurrency)

    async def deliver(batch: list[Record]) -> None:
        try:
            results = await send([record.event for record in batch])
        finally:
            slots.release()
        for record, result in zip(batch, results, strict=True):
            if result.status == REJECTED:
                tally.rejected += 1
                report(rejection_message(source, record.line, result))
            elif result.status == DUPLICATE:
                tally.duplicate += 1
            else:
                tally.accepted += 1
        on_progress(tally)

    try:
        async with asyncio.TaskGroup() as group:
            batch: list[Record] = []
            batch_bytes = 0

            async def flush() -> None:
                nonlocal batch, batch_bytes
                await slots.acquire()
                group.create_task(deliver(batch))
                batch, batch_bytes = [], 0

            while chunk := await asyncio.to_thread(_take, items, batch_size, source):
                for item in chunk:
                    tally.lines = item.line
                    tally.read += 1
                    size = item.event.ByteSize() if isinstance(item, Record) else 0
                    if size > max_call_bytes:
                        item = _too_big(item.line, size, max_call_bytes)
                    if isinstance(item, LineProblem):
                        tally.unreadable += 1
                        report(item.at(source))
                        continue
                    if batch and batch_bytes + size > max_call_bytes:
                        await flush()
                    batch.append(item)
                    batch_bytes += size
                    if len(batch) >= batch_size:
                        await flush()
                on_progress(tally)
            if batch:
                await flush()
    except ExceptionGroup as failures:
        raise first_failure(failures) from None
    tally.finished = time.monotonic()
    on_progress(tally)
    return tally
