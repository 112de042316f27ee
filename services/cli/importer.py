"""Stream parsed lines through TrackBatch: batches, several calls in flight, per-line results.

Pure of any terminal: the caller passes how to send a batch, where problem lines go and
what to do with progress, so the same engine serves `cohortflow import` and tests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field

from cohortflow.ingest.v1 import ingest_pb2

from services.cli.client import CliError, first_failure
from services.cli.output import violations_text
from services.cli.records import FileProblem, LineProblem, Record

SendBatch = Callable[[list[ingest_pb2.Event]], Awaitable[Sequence[ingest_pb2.EventResult]]]
REJECTED = ingest_pb2.EventResult.STATUS_REJECTED
DUPLICATE = ingest_pb2.EventResult.STATUS_DUPLICATE


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


def rejection_message(line: int, result: ingest_pb2.EventResult) -> str:
    """One line for an event ingest rejected: where, which event, and every bad field."""
    why = violations_text(result.violations) or "rejected"
    return f"line {line} (event_id {result.event_id}): {why}"


def _take(items: Iterator[Record | LineProblem], count: int) -> list[Record | LineProblem]:
    out: list[Record | LineProblem] = []
    try:
        for item in items:
            out.append(item)
            if len(out) >= count:
                break
    except FileProblem as problem:
        raise CliError(str(problem)) from None
    except UnicodeDecodeError as problem:
        after = f" after line {out[-1].line}" if out else ""
        raise CliError(f"the file is not UTF-8 text{after} ({problem.reason})") from None
    return out


async def import_records(
    items: Iterator[Record | LineProblem],
    send: SendBatch,
    *,
    report: Callable[[str], None],
    on_progress: Callable[[ImportTally], None] = lambda tally: None,
    batch_size: int = 1000,
    concurrency: int = 4,
) -> ImportTally:
    """Send every record, at most `concurrency` batches in flight; report each bad line."""
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
                report(rejection_message(record.line, result))
            elif result.status == DUPLICATE:
                tally.duplicate += 1
            else:
                tally.accepted += 1
        on_progress(tally)

    try:
        async with asyncio.TaskGroup() as group:
            batch: list[Record] = []
            while chunk := await asyncio.to_thread(_take, items, batch_size):
                for item in chunk:
                    tally.lines = item.line
                    tally.read += 1
                    if isinstance(item, LineProblem):
                        tally.unreadable += 1
                        report(str(item))
                        continue
                    batch.append(item)
                    if len(batch) >= batch_size:
                        await slots.acquire()
                        group.create_task(deliver(batch))
                        batch = []
                on_progress(tally)
            if batch:
                await slots.acquire()
                group.create_task(deliver(batch))
    except ExceptionGroup as failures:
        raise first_failure(failures) from None
    tally.finished = time.monotonic()
    on_progress(tally)
    return tally
