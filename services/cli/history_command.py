"""`cohortflow import --history FILE`: a file of any age and order through a history
import job, followed until the projector has folded it.

Steps: start a job, upload every line (`history_upload`: the reading, mapping and
per-line reports of `cohortflow import`), finish the job, follow ingest appending it
(GetHistoryImport), then follow the projector folding it (a lifecycle summary read with
`min_position` = each partition's Finished marker). A job that staged nothing new (the
same file again: every line DUPLICATE) is done at once and appends nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from cohortflow.ingest.v1 import history_pb2
from rich.progress import MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from services.cli import output
from services.cli.client import CliError, Connection, Target
from services.cli.history_calls import FoldCalls, HistoryCalls
from services.cli.history_upload import upload_records
from services.cli.importer import ImportTally
from services.cli.records import LineProblem, Record
from services.eventlog.partitions import decode_position

APPENDING = history_pb2.HistoryImport.STATE_APPENDING
FAILED = history_pb2.HistoryImport.STATE_FAILED
POLL_S = 0.5
CANCEL_S = 10.0


@dataclass(frozen=True)
class HistoryOutcome:
    tally: ImportTally
    job: history_pb2.HistoryImport
    folded: bool


class HistoryProgress:
    """Three bars on stderr (a terminal only): lines read and uploaded, staged events
    appended by ingest, log entries of the history folded by the projector; each with
    its rate's estimate of the time left."""

    def __init__(self, total_lines: int | None) -> None:
        self.bars: Progress = output.live_progress(
            "{task.description}",
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeRemainingColumn(),
        )
        self._upload = self.bars.add_task("read", total=total_lines, stats="")
        self._append = self.bars.add_task("appended", total=None, stats="", start=False)
        self._fold = self.bars.add_task("folded", total=None, stats="", start=False)

    def uploaded(self, tally: ImportTally) -> None:
        stats = f"{tally.sent:,} uploaded, {tally.failed:,} bad"
        self.bars.update(self._upload, completed=tally.lines, stats=stats)

    def appending(self, job: history_pb2.HistoryImport) -> None:
        self.bars.start_task(self._append)
        stats = f"{job.appended_count:,} new in the log"
        if job.append_rate:
            stats += f", {job.append_rate:,.0f}/s"
        self.bars.update(
            self._append, total=job.staged_count, completed=job.processed_count, stats=stats
        )

    def folding(self, done: int, total: int) -> None:
        self.bars.start_task(self._fold)
        self.bars.update(self._fold, total=total, completed=done, stats="log entries")


async def import_history(
    target: Target,
    items: Iterator[Record | LineProblem],
    *,
    source: str,
    report: Callable[[str], None],
    progress: HistoryProgress,
    batch_size: int,
    concurrency: int,
    max_call_bytes: int,
    wait: bool,
) -> HistoryOutcome:
    async with Connection(target, "ingest") as ingest:
        calls = HistoryCalls(ingest)
        job = await calls.start(uuid.uuid4().hex, f"cohortflow import --history {source}")
        try:
            tally = await upload_records(
                items,
                job.job_id,
                calls.upload,
                report=report,
                source=source,
                on_progress=progress.uploaded,
                batch_size=batch_size,
                concurrency=concurrency,
                max_call_bytes=max_call_bytes,
            )
        except BaseException:  # a failure, or Ctrl-C (the task cancelled)
            # Let go of the app's one running job; what was staged goes with it.
            with contextlib.suppress(CliError, TimeoutError):
                await asyncio.wait_for(calls.cancel(job.job_id), CANCEL_S)
            raise
        job = await calls.finish(job.job_id)
        while job.state == APPENDING:
            progress.appending(job)
            await asyncio.sleep(POLL_S)
            job = await calls.get(job.job_id)
        progress.appending(job)
    if job.state == FAILED:
        msg = f"history import {job.job_id} failed while appending: {job.failure_reason}"
        raise CliError(msg)
    if not wait or not job.finished_positions:
        return HistoryOutcome(tally, job, folded=False)
    async with Connection(target, "projector") as projector:
        await wait_folded(FoldCalls(projector), job, progress.folding)
    return HistoryOutcome(tally, job, folded=True)


async def wait_folded(
    fold: FoldCalls, job: history_pb2.HistoryImport, show: Callable[[int, int], None]
) -> None:
    """Until the projector has folded every partition's Finished marker; `show(done,
    total)` counts the log entries between the markers folded so far."""
    starts = [decode_position(p)[1] for p in job.started_positions]
    ends = [decode_position(p)[1] for p in job.finished_positions]
    spans = [max(0, end - start) for start, end in zip(starts, ends, strict=True)]
    total, done = sum(spans), 0
    show(done, total)
    for partition, finished in enumerate(job.finished_positions):
        while not await fold.reached(finished):
            part, reached = decode_position(await fold.position())
            partial = min(max(0, reached - starts[partition]), spans[partition])
            show(done + (partial if part == partition else 0), total)
        done += spans[partition]
        show(done, total)


def history_summary(outcome: HistoryOutcome) -> str:
    job = outcome.job
    if not job.started_positions:
        return f"history import {job.job_id}: nothing new to append"
    line = f"history import {job.job_id}: {job.appended_count:,} events appended to the log"
    if outcome.folded:
        return line + ", folded by the projector"
    return line + "; the projector folds it next (--no-wait)"
