"""`cohortflow import FILE`: JSONL or CSV events through TrackBatch, with progress and a summary."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from enum import StrEnum
from pathlib import Path
from typing import Annotated, BinaryIO

import typer
from cohortflow.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from rich.progress import MofNCompleteColumn, TextColumn

from services.cli import output
from services.cli.client import CliError, Connection, target_of
from services.cli.csv_rows import read_csv
from services.cli.importer import MAX_CALL_BYTES, ImportTally, import_records
from services.cli.lines import read_lines
from services.cli.records import LineProblem, Record, read_jsonl


class FileFormat(StrEnum):
    jsonl = "jsonl"
    csv = "csv"


_EXTENSIONS = {".jsonl": FileFormat.jsonl, ".ndjson": FileFormat.jsonl, ".csv": FileFormat.csv}


def file_format(path: str, explicit: FileFormat | None) -> FileFormat:
    if explicit is not None:
        return explicit
    found = _EXTENSIONS.get(Path(path).suffix.lower())
    if found is None:
        where = "stdin" if path == "-" else path
        msg = f"cannot tell the format of {where}; pass --format jsonl or --format csv"
        raise typer.BadParameter(msg, param_hint="--format")
    return found


def _open(path: str, stack: ExitStack) -> BinaryIO:
    """The file as bytes: each line is decoded and checked on its own (`lines`)."""
    if path == "-":
        return sys.stdin.buffer
    try:
        return stack.enter_context(open(path, "rb"))
    except OSError as problem:
        raise CliError(f"cannot read {path}: {problem.strerror}") from None


def source_name(path: str) -> str:
    """How reports name the file: as given, `stdin` for -."""
    return "stdin" if path == "-" else path


def _count_lines(path: str) -> int | None:
    if path == "-" or not Path(path).is_file():
        return None
    with open(path, "rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def summary_line(path: str, tally: ImportTally) -> str:
    return (
        f"imported {path}: {tally.read:,} events read, {tally.accepted:,} accepted,"
        f" {tally.duplicate:,} duplicate, {tally.rejected:,} rejected,"
        f" {tally.unreadable:,} unreadable in {tally.elapsed:.1f} s"
        f" ({tally.events_per_second:,.0f} events/s)"
    )


def import_file(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="A .jsonl or .csv file of events, or - for stdin.")],
    format: Annotated[
        FileFormat | None,
        typer.Option("--format", "-f", help="File format (default: from the extension)."),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=1000, help="Events per call.")] = 1000,
    batch_bytes: Annotated[
        int, typer.Option(min=64 * 1024, help="Most encoded event bytes per call.")
    ] = MAX_CALL_BYTES,
    concurrency: Annotated[int, typer.Option(min=1, max=32, help="Calls in flight.")] = 4,
) -> None:
    """Import events, one per line; every bad line is reported as FILE:LINE: FIELD: PROBLEM.

    A bad line (not UTF-8, a NUL byte, longer than 1 MiB, not an event) is reported and
    the import goes on; nothing of it is stored. Exits 1 if any line was unreadable or
    rejected. Re-importing the same file reports every event DUPLICATE (event ids are the
    idempotency keys).
    """
    target = target_of(ctx)
    kind = file_format(file, format)
    progress = output.live_progress(
        "importing", MofNCompleteColumn(), TextColumn("{task.fields[stats]}")
    )
    task = progress.add_task("import", total=_count_lines(file), stats="")

    def on_progress(tally: ImportTally) -> None:
        stats = f"{tally.sent:,} sent, {tally.failed:,} bad, {tally.events_per_second:,.0f}/s"
        progress.update(task, completed=tally.lines, stats=stats)

    async def run(stream: BinaryIO) -> ImportTally:
        lines = read_lines(stream)
        items: Iterator[Record | LineProblem] = (
            read_jsonl(lines) if kind is FileFormat.jsonl else read_csv(lines)
        )
        async with Connection(target, "ingest") as conn:
            stub = ingest_pb2_grpc.IngestServiceStub(conn.channel)

            async def send(events: list[ingest_pb2.Event]) -> list[ingest_pb2.EventResult]:
                request = ingest_pb2.TrackBatchRequest(events=events)
                reply = await conn.unary(stub.TrackBatch, request, deadline_s=120, retries=5)
                return list(reply.results)

            return await import_records(
                items,
                send,
                report=lambda line: output.problem(line, progress.console),
                source=source_name(file),
                on_progress=on_progress,
                batch_size=batch_size,
                concurrency=concurrency,
                max_call_bytes=batch_bytes,
            )

    with ExitStack() as stack:
        stream = _open(file, stack)
        with progress:
            tally = asyncio.run(run(stream))
    output.stdout().print(summary_line(file, tally), markup=False, soft_wrap=True)
    if tally.failed:
        output.error(f"{tally.failed:,} of {tally.read:,} events were not imported (see above)")
        raise typer.Exit(1)
