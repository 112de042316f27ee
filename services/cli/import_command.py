"""`cohortflow import FILE`: JSONL or CSV events through TrackBatch, with progress and a summary.

JSONL lines may also be a tool's export (`--from segment|mixpanel|amplitude`, or told
from the first lines: import_formats); a `.gz` file is read through gzip.
"""

from __future__ import annotations

import asyncio
import gzip
import sys
import zlib
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, BinaryIO, cast

import typer
from rich.progress import MofNCompleteColumn, TextColumn

from services.cli import output
from services.cli.client import CliError, Connection, Target, target_of
from services.cli.csv_rows import read_csv
from services.cli.history_command import HistoryProgress, history_summary, import_history
from services.cli.import_calls import IngestCalls
from services.cli.import_formats import FormatReader, Source
from services.cli.importer import MAX_CALL_BYTES, ImportTally, import_records
from services.cli.lines import FileProblem, read_lines
from services.cli.records import LineProblem, Record


class FileFormat(StrEnum):
    jsonl = "jsonl"
    csv = "csv"


_EXTENSIONS = {
    ".jsonl": FileFormat.jsonl,
    ".ndjson": FileFormat.jsonl,
    ".json": FileFormat.jsonl,  # Amplitude's export files: one object per line
    ".csv": FileFormat.csv,
}


def _gzipped(path: str) -> bool:
    return path.lower().endswith(".gz")


def file_format(path: str, explicit: FileFormat | None, source: Source | None = None) -> FileFormat:
    """--format, else the extension, else JSON lines when --from names whose they are."""
    if explicit is not None:
        return explicit
    found = _EXTENSIONS.get(Path(path.removesuffix(".gz").removesuffix(".GZ")).suffix.lower())
    if found is None and source is not None:
        return FileFormat.jsonl
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
        raw = _opened(path, stack)
    except OSError as problem:
        raise CliError(f"cannot read {path}: {problem.strerror}") from None
    return cast(BinaryIO, _Gunzipped(raw)) if _gzipped(path) else raw


class _Gunzipped:
    """The lines of a gzip file; a damaged one stops the import at the line reached."""

    def __init__(self, raw: BinaryIO) -> None:
        self._file = gzip.GzipFile(fileobj=raw, mode="rb")
        self._lines = 0

    def readline(self, size: int = -1) -> bytes:
        try:
            out = self._file.readline(size)
        except (OSError, EOFError, zlib.error) as error:
            reason = f"not a readable gzip file ({error})"
            raise FileProblem(self._lines + 1, reason) from None
        self._lines += out.endswith(b"\n")
        return out


def _opened(path: str, stack: ExitStack) -> BinaryIO:
    return stack.enter_context(open(path, "rb"))


def source_name(path: str) -> str:
    """How reports name the file: as given, `stdin` for -."""
    return "stdin" if path == "-" else path


def _count_lines(path: str) -> int | None:
    if path == "-" or _gzipped(path) or not Path(path).is_file():
        return None
    with open(path, "rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def summary_line(path: str, tally: ImportTally, how: str = "") -> str:
    return (
        f"imported {path}: {tally.read:,} events read, {tally.accepted:,} accepted,"
        f" {tally.duplicate:,} duplicate, {tally.rejected:,} rejected,"
        f" {tally.unreadable:,} unreadable in {tally.elapsed:.1f} s"
        f" ({tally.events_per_second:,.0f} events/s)" + (f"; {how}" if how else "")
    )


def _source_for(kind: FileFormat, source: Source | None) -> Source | None:
    if kind is FileFormat.csv and source not in (None, Source.cohortflow):
        msg = "--from reads JSON lines; a CSV file holds cohortflow events"
        raise typer.BadParameter(msg, param_hint="--from")
    return source


def import_file(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="A .jsonl or .csv file of events, or - for stdin.")],
    format: Annotated[
        FileFormat | None,
        typer.Option("--format", "-f", help="File format (default: from the extension)."),
    ] = None,
    source: Annotated[
        Source | None,
        typer.Option(
            "--from", help="Whose JSON lines: a tool's export (default: told from the lines)."
        ),
    ] = None,
    history: Annotated[
        bool,
        typer.Option(
            "--history",
            help="Import as the app's history: any age, any order, folded in event-time"
            " order with the app's own clock (a history import job).",
        ),
    ] = False,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait/--no-wait", help="With --history: wait until the projector has folded it."
        ),
    ] = True,
    batch_size: Annotated[int, typer.Option(min=1, max=1000, help="Events per call.")] = 1000,
    batch_bytes: Annotated[
        int, typer.Option(min=64 * 1024, help="Most encoded event bytes per call.")
    ] = MAX_CALL_BYTES,
    concurrency: Annotated[int, typer.Option(min=1, max=32, help="Calls in flight.")] = 4,
) -> None:
    """Import events, one per line; every bad line is reported as FILE:LINE: FIELD: PROBLEM.

    JSON lines are cohortflow events or a tool's export (Segment, Mixpanel, Amplitude),
    told from the first lines unless --from says. A bad line (not UTF-8, a NUL byte,
    longer than 1 MiB, not an event) is reported and the import goes on; nothing of it
    is stored. Exits 1 if any line was unreadable or rejected. Re-importing the same file
    reports every event DUPLICATE (event ids are the idempotency keys). With --history
    the file goes through a history import job (README, History import).
    """
    target = target_of(ctx)
    kind = file_format(file, format, source)
    reader = FormatReader(_source_for(kind, source))

    def records(stream: BinaryIO) -> Iterator[Record | LineProblem]:
        lines = read_lines(stream)
        return reader.records(lines) if kind is FileFormat.jsonl else read_csv(lines)

    sending = _Sending(target, file, batch_size, batch_bytes, concurrency)
    with ExitStack() as stack:
        stream = _open(file, stack)
        if history:
            tally, after = _import_history(sending, records(stream), wait)
        else:
            tally, after = _import_live(sending, records(stream)), ""
    how = reader.description() if kind is FileFormat.jsonl else ""
    output.stdout().print(summary_line(file, tally, how), markup=False, soft_wrap=True)
    if after:
        output.stdout().print(after, markup=False, soft_wrap=True)
    if tally.failed:
        output.error(f"{tally.failed:,} of {tally.read:,} events were not imported (see above)")
        raise typer.Exit(1)


@dataclass(frozen=True)
class _Sending:
    """Where an import goes and how it batches its calls."""

    target: Target
    file: str
    batch_size: int
    batch_bytes: int
    concurrency: int


def _import_live(sending: _Sending, items: Iterator[Record | LineProblem]) -> ImportTally:
    progress = output.live_progress(
        "importing", MofNCompleteColumn(), TextColumn("{task.fields[stats]}")
    )
    task = progress.add_task("import", total=_count_lines(sending.file), stats="")

    def on_progress(tally: ImportTally) -> None:
        stats = f"{tally.sent:,} sent, {tally.failed:,} bad, {tally.events_per_second:,.0f}/s"
        progress.update(task, completed=tally.lines, stats=stats)

    async def run() -> ImportTally:
        async with Connection(sending.target, "ingest") as conn:
            calls = IngestCalls(conn)
            return await import_records(
                items,
                calls.track_batch,
                identify=calls.identify,
                report=lambda line: output.problem(line, progress.console),
                source=source_name(sending.file),
                on_progress=on_progress,
                batch_size=sending.batch_size,
                concurrency=sending.concurrency,
                max_call_bytes=sending.batch_bytes,
            )

    with progress:
        return asyncio.run(run())


def _import_history(
    sending: _Sending, items: Iterator[Record | LineProblem], wait: bool
) -> tuple[ImportTally, str]:
    progress = HistoryProgress(_count_lines(sending.file))
    with progress.bars:
        outcome = asyncio.run(
            import_history(
                sending.target,
                items,
                source=source_name(sending.file),
                report=lambda line: output.problem(line, progress.bars.console),
                progress=progress,
                batch_size=sending.batch_size,
                concurrency=sending.concurrency,
                max_call_bytes=sending.batch_bytes,
                wait=wait,
            )
        )
    return outcome.tally, history_summary(outcome)
