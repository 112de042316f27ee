"""Stream parsed lines through TrackBatch: batches, several calls in flight, per-line results.

Pure of any terminal: the caller passes how to send a batch (and an Identify call), where
problem lines go and what to do with progress, so the same engine serves `cohortflow
import` and tests. Every line read is counted once: sent (accepted, duplicate or rejected
by ingest) or unreadable, each bad one reported as `source:line: field: problem`.

A line may also carry Identify calls (profile updates, identity links, from the formats
users migrate from): they are sent after the line's event is stored, one after another,
and not at all once one of the line's messages is rejected, so nothing of a rejected
event's line is stored after it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field

from cohortflow.ingest.v1 import ingest_pb2

from services.cli.client import CliError, first_failure
from services.cli.output import violations_text
from services.cli.records import FileProblem, LineProblem, Record, printable

SendBatch = Callable[[list[ingest_pb2.Event]], Awaitable[Sequence[ingest_pb2.EventResult]]]
SendIdentify = Callable[[ingest_pb2.IdentifyRequest], Awaitable[ingest_pb2.EventResult]]
REJECTED = ingest_pb2.EventResult.STATUS_REJECTED
DUPLICATE = ingest_pb2.EventResult.STATUS_DUPLICATE
# Most encoded event bytes in one call: under gRPC's usual 4 MiB limit of a request.
MAX_CALL_BYTES = 3 * 1024 * 1024
# Identify calls in flight at once (over all batches); a line's own go one after another.
IDENTIFY_CONCURRENCY = 32
# Links remembered as sent; past this many the memory starts again (a repeat is DUPLICATE).
_LINKS_REMEMBERED = 100_000


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


def take_records(
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


def too_big(line: int, size: int, max_call_bytes: int) -> LineProblem:
    reason = f"is {size:,} bytes as an event; one call carries at most {max_call_bytes:,}"
    return LineProblem(line, "", reason)


def largest_message(record: Record) -> int:
    sizes = [record.event.ByteSize()] if record.event is not None else []
    sizes += [request.ByteSize() for request in record.identifies]
    return max(sizes, default=0)


async def _no_identify(request: ingest_pb2.IdentifyRequest) -> ingest_pb2.EventResult:
    raise CliError(f"cannot send Identify {request.event_id}: this import has no Identify call")


class _Lines:
    """Sends what each line carries beyond its event, and counts what became of it."""

    def __init__(
        self, identify: SendIdentify, tally: ImportTally, report: Callable[[str], None], source: str
    ) -> None:
        self._identify = identify
        self._slots = asyncio.Semaphore(IDENTIFY_CONCURRENCY)
        self._linked: set[str] = set()
        self._tally = tally
        self._report = report
        self._source = source

    async def follow(
        self, record: Record, first: ingest_pb2.EventResult | None
    ) -> list[ingest_pb2.EventResult]:
        """The results of the line: its event's, then each Identify's until one is rejected."""
        results = [first] if first is not None else []
        if first is not None and first.status == REJECTED:
            return results
        calls = list(record.identifies)
        if record.link is not None and record.link.event_id not in self._linked:
            calls.insert(0, record.link)
        for request in calls:
            async with self._slots:
                result = await self._identify(request)
            results.append(result)
            if result.status == REJECTED:
                break
            if request is record.link:
                if len(self._linked) >= _LINKS_REMEMBERED:
                    self._linked.clear()
                self._linked.add(request.event_id)
        return results

    def count(self, record: Record, results: list[ingest_pb2.EventResult]) -> None:
        count_line(self._tally, results, lambda r: self._report_rejected(record, r))

    def _report_rejected(self, record: Record, result: ingest_pb2.EventResult) -> None:
        self._report(rejection_message(self._source, record.line, result))


def count_line(
    tally: ImportTally,
    results: Sequence[ingest_pb2.EventResult],
    report: Callable[[ingest_pb2.EventResult], None],
) -> None:
    """Count a line by what became of its messages: rejected if any was (each rejected
    one reported), duplicate if all were, else accepted."""
    rejected = [result for result in results if result.status == REJECTED]
    if rejected:
        tally.rejected += 1
        for result in rejected:
            report(result)
    elif results and all(result.status == DUPLICATE for result in results):
        tally.duplicate += 1
    else:
        tally.accepted += 1


async def sendable(
    items: Iterator[Record | LineProblem],
    tally: ImportTally,
    report: Callable[[str], None],
    source: str,
    chunk: int,
    max_call_bytes: int,
    on_chunk: Callable[[ImportTally], None],
) -> AsyncIterator[Record]:
    """The records of `items` that can be sent, read `chunk` lines at a time off the event
    loop; every line is counted as read, each that cannot be sent (unreadable, or a message
    larger than `max_call_bytes`) counted unreadable and reported."""
    while lines := await asyncio.to_thread(take_records, items, chunk, source):
        for item in lines:
            tally.lines = item.line
            tally.read += 1
            largest = largest_message(item) if isinstance(item, Record) else 0
            if largest > max_call_bytes:
                item = too_big(item.line, largest, max_call_bytes)
            if isinstance(item, LineProblem):
                tally.unreadable += 1
                report(item.at(source))
                continue
            yield item
        on_chunk(tally)


async def import_records(
    items: Iterator[Record | LineProblem],
    send: SendBatch,
    *,
    report: Callable[[str], None],
    identify: SendIdentify = _no_identify,
    source: str = "-",
    on_progress: Callable[[ImportTally], None] = lambda tally: None,
    batch_size: int = 1000,
    concurrency: int = 4,
    max_call_bytes: int = MAX_CALL_BYTES,
) -> ImportTally:
    """Send every record in batches of at most `batch_size` lines and `max_call_bytes` of
    events, at most `concurrency` batches in flight, their Identify calls through
    `identify`; report each bad line (named `source:line`)."""
    tally = ImportTally()
    slots = asyncio.Semaphore(concurrency)
    lines = _Lines(identify, tally, report, source)

    async def deliver(batch: list[Record]) -> None:
        try:
            events = [record.event for record in batch if record.event is not None]
            replies = list(await send(events)) if events else []
            if len(replies) != len(events):
                msg = f"ingest answered {len(replies)} results for {len(events)} events"
                raise CliError(msg)
            answers = iter(replies)
            firsts = [next(answers) if record.event is not None else None for record in batch]
            outcomes = [[first] if first is not None else [] for first in firsts]
            async with asyncio.TaskGroup() as follow_ups:
                pending = {
                    n: follow_ups.create_task(lines.follow(record, firsts[n]))
                    for n, record in enumerate(batch)
                    if record.identifies or record.link is not None
                }
            for n, task in pending.items():
                outcomes[n] = task.result()
        finally:
            slots.release()
        for record, results in zip(batch, outcomes, strict=True):
            lines.count(record, results)
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

            readable = sendable(
                items, tally, report, source, batch_size, max_call_bytes, on_progress
            )
            async for item in readable:
                size = item.event.ByteSize() if item.event is not None else 0
                if batch and batch_bytes + size > max_call_bytes:
                    await flush()
                batch.append(item)
                batch_bytes += size
                if len(batch) >= batch_size:
                    await flush()
            if batch:
                await flush()
    except ExceptionGroup as failures:
        raise first_failure(failures) from None
    tally.finished = time.monotonic()
    on_progress(tally)
    return tally
