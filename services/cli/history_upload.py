"""Stream parsed lines into a history import job: UploadHistory calls, several in flight.

The same reading and per-line reporting as `cohortflow import` (`importer`): every line
read is counted once, accepted, duplicate, rejected or unreadable, each bad one reported
as `source:line: field: problem`. A line's event and Identify calls go in one call as one
record, so ingest stages them all or none: nothing of a rejected line is staged. A link
(ids joined by an event that carries both) is sent with the first line that implies it.

Memory: at most `concurrency` calls of `batch_size` items and `max_call_bytes` each, plus
the links remembered (at most 100,000 ids), whatever the size of the file.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

from cohortflow.ingest.v1 import history_pb2, ingest_pb2

from services.cli.client import CliError, first_failure
from services.cli.history_calls import results_of
from services.cli.importer import (
    REJECTED,
    ImportTally,
    count_line,
    rejection_message,
    sendable,
)
from services.cli.records import LineProblem, Record

SendUpload = Callable[
    [history_pb2.UploadHistoryRequest], Awaitable[history_pb2.UploadHistoryResponse]
]
# Links remembered as sent; past this many the memory starts again (a repeat is DUPLICATE).
_LINKS_REMEMBERED = 100_000
# The violation ingest adds to the other items of a rejected line: its cause is reported.
_RECORD_FIELD = "record"


@dataclass
class _Call:
    """One UploadHistory call being filled: its records and what each sends."""

    records: list[Record] = field(default_factory=list)
    request: history_pb2.UploadHistoryRequest = field(
        default_factory=history_pb2.UploadHistoryRequest
    )
    links: list[str] = field(default_factory=list)
    size: int = 0

    @property
    def items(self) -> int:
        return len(self.request.events) + len(self.request.identifies)


def _weight(record: Record) -> tuple[int, int]:
    """Items and encoded bytes a record may add to a call (its link counted)."""
    messages = [*record.identifies]
    if record.event is not None:
        messages.append(record.event)  # type: ignore[arg-type]
    if record.link is not None:
        messages.append(record.link)
    return len(messages), sum(m.ByteSize() for m in messages)


def _only_for_its_line(result: ingest_pb2.EventResult) -> bool:
    return all(v.field == _RECORD_FIELD for v in result.violations)


class _Uploader:
    def __init__(
        self, job_id: str, send: SendUpload, report: Callable[[str], None], source: str
    ) -> None:
        self._job_id = job_id
        self._send = send
        self._report = report
        self._source = source
        self.tally = ImportTally()
        self._linked: set[str] = set()

    def add(self, call: _Call, record: Record) -> None:
        request = call.request
        if record.event is not None:
            request.events.append(record.event)
            request.event_records.append(record.line)
            call.size += record.event.ByteSize()
        identifies = list(record.identifies)
        if record.link is not None and record.link.event_id not in self._linked:
            identifies.insert(0, record.link)
            call.links.append(record.link.event_id)
            if len(self._linked) >= _LINKS_REMEMBERED:
                self._linked.clear()
            self._linked.add(record.link.event_id)  # in flight: not sent again meanwhile
        for identify in identifies:
            request.identifies.append(identify)
            request.identify_records.append(record.line)
            call.size += identify.ByteSize()
        call.records.append(record)

    async def deliver(self, call: _Call) -> None:
        call.request.job_id = self._job_id
        reply = await self._send(call.request)
        results = results_of(reply)
        if len(results) != call.items:
            msg = f"ingest answered {len(results)} results for {call.items} items"
            raise CliError(msg)
        by_line: dict[int, list[ingest_pb2.EventResult]] = {}
        lines = [*call.request.event_records, *call.request.identify_records]
        for line, result in zip(lines, results, strict=True):
            by_line.setdefault(line, []).append(result)
        # A link refused with its line goes with a later line that implies it.
        self._linked.difference_update(
            r.event_id
            for r in reply.identify_results
            if r.status == REJECTED and r.event_id in call.links
        )
        for record in call.records:
            self._count(record, by_line.get(record.line, []))

    def _count(self, record: Record, found: list[ingest_pb2.EventResult]) -> None:
        causes = [r for r in found if r.status == REJECTED and not _only_for_its_line(r)]
        count_line(self.tally, found, lambda result: self._rejected(record, result, causes))

    def _rejected(
        self, record: Record, result: ingest_pb2.EventResult, causes: list[ingest_pb2.EventResult]
    ) -> None:
        if causes and _only_for_its_line(result):
            return  # the line's real cause is reported
        self._report(rejection_message(self._source, record.line, result))


async def upload_records(
    items: Iterator[Record | LineProblem],
    job_id: str,
    send: SendUpload,
    *,
    report: Callable[[str], None],
    source: str = "-",
    on_progress: Callable[[ImportTally], None] = lambda tally: None,
    batch_size: int = 1000,
    concurrency: int = 4,
    max_call_bytes: int = 3 * 1024 * 1024,
) -> ImportTally:
    """Upload every record to job `job_id`, at most `batch_size` items and
    `max_call_bytes` per call and `concurrency` calls in flight; report each bad line."""
    uploader = _Uploader(job_id, send, report, source)
    tally = uploader.tally
    slots = asyncio.Semaphore(concurrency)

    async def deliver(call: _Call) -> None:
        try:
            await uploader.deliver(call)
        finally:
            slots.release()
        on_progress(tally)

    try:
        async with asyncio.TaskGroup() as group:
            call = _Call()

            async def flush() -> None:
                nonlocal call
                await slots.acquire()
                group.create_task(deliver(call))
                call = _Call()

            readable = sendable(
                items, tally, report, source, batch_size, max_call_bytes, on_progress
            )
            async for item in readable:
                wanted, size = _weight(item)
                if call.records and (
                    call.items + wanted > batch_size or call.size + size > max_call_bytes
                ):
                    await flush()
                uploader.add(call, item)
            if call.records:
                await flush()
    except ExceptionGroup as failures:
        raise first_failure(failures) from None
    tally.finished = time.monotonic()
    on_progress(tally)
    return tally
