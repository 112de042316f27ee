"""`cohortflow segments apply|preview|diff|archive|restore`: defining segments (the reads,
`list|get|members|history|check` and `cohortflow watch`, are in segment_reads)."""

from __future__ import annotations

import asyncio
import difflib
from pathlib import Path
from typing import Annotated

import grpc
import typer
import yaml
from cohortflow.segments.v1 import segments_pb2
from cohortflow.segments.v1.segments_pb2_grpc import SegmentServiceStub
from rich.progress import MofNCompleteColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from services.cli import output
from services.cli.client import (
    CliError,
    Connection,
    ask,
    describe_rpc_error,
    target_of,
)
from services.cli.segment_apply import UNCHANGED, apply_segments, segment_message
from services.cli.segment_files import SegmentFileError, SegmentSpec, load_segments
from services.cli.segment_options import JsonOption
from services.cli.segment_reads import reads
from services.common.segment_wire import FINAL_BUILD_STATUSES, BuildStatus, condition_to_dict

app = typer.Typer(help="Define, preview and inspect segments.", no_args_is_help=True)

FileOption = Annotated[
    Path, typer.Option("--file", "-f", help="A YAML file with one segment or `segments:`.")
]
MinPositionOption = Annotated[
    int,
    typer.Option(
        min=0, help="Wait until the projector has read the log this far (e.g. after track)."
    ),
]


def _load(file: Path) -> tuple[SegmentSpec, ...]:
    try:
        return load_segments(file)
    except SegmentFileError as problem:
        raise CliError(str(problem)) from None


async def _current(conn: Connection, segment_id: str) -> segments_pb2.Segment | None:
    stub = SegmentServiceStub(conn.channel)
    try:
        reply = await stub.GetSegment(
            segments_pb2.GetSegmentRequest(segment_id=segment_id),
            metadata=conn.target.metadata(),
            timeout=30,
        )
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
            return None
        raise CliError(describe_rpc_error(error, "projector", conn.address)) from None
    return reply.segment


async def _watch_build(conn: Connection, segment_id: str, version: int, position: int) -> None:
    stub = SegmentServiceStub(conn.channel)
    with output.live_progress(
        f"building {segment_id}",
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
    ) as bar:
        task = bar.add_task(segment_id, total=None, rate="")
        stream = stub.WatchSegmentBuild(
            segments_pb2.WatchSegmentBuildRequest(
                segment_id=segment_id, version=version, min_position=position
            ),
            metadata=conn.target.metadata(),
        )
        async for item in stream:
            build = item.build
            bar.update(
                task,
                total=build.events_total or None,
                completed=build.events_done,
                rate=f"{build.events_per_second:,.0f} events/s" if build.events_per_second else "",
            )
            if build.status in FINAL_BUILD_STATUSES:
                if build.status == BuildStatus.FAILED:
                    raise CliError(
                        f"the build of {segment_id} v{build.version} failed: {build.error}"
                    )
                return


@app.command("apply")
def apply(
    ctx: typer.Context,
    file: FileOption,
    silent: Annotated[
        bool, typer.Option(help="Switch versions without publishing entries and exits.")
    ] = False,
    wait: Annotated[bool, typer.Option(help="Wait until each version is built and live.")] = True,
) -> None:
    """Create the segments in FILE, or update those whose definition changed (idempotent)."""
    specs = _load(file)
    target = target_of(ctx)

    async def run() -> None:
        async with Connection(target, "projector") as conn:
            console = output.stdout()
            for done in await apply_segments(conn, specs, silent=silent):
                if done.outcome == UNCHANGED:
                    console.print(f"{done.name}: unchanged (v{done.version})", markup=False)
                    continue
                console.print(
                    f"{done.name}: {done.outcome}, v{done.version}"
                    f" (defined at position {done.position})",
                    markup=False,
                )
                if wait:
                    await _watch_build(conn, done.name, done.version, done.position)
                    live = await _current(conn, done.name)
                    if live is not None:
                        console.print(
                            f"{done.name}: v{live.active_version} live, {live.size:,} members",
                            markup=False,
                        )

    asyncio.run(run())


@app.command("preview")
def preview(
    ctx: typer.Context,
    file: FileOption,
    sample: Annotated[int, typer.Option(min=0, max=1000, help="User ids to show.")] = 10,
    min_position: MinPositionOption = 0,
    json: JsonOption = False,
) -> None:
    """What the segments in FILE would hold now, over the full history (changes nothing)."""
    target = target_of(ctx)
    for spec in _load(file):
        reply = ask(
            target,
            "projector",
            SegmentServiceStub,
            "PreviewSegment",
            segments_pb2.PreviewSegmentRequest(
                segment=segment_message(spec), sample_size=sample, min_position=min_position
            ),
            deadline_s=600,
        )
        if json:
            output.print_json(reply)
            continue
        table = Table(title=f"{spec.segment_id} (preview at position {reply.position:,})")
        table.add_column("")
        table.add_column("users", justify="right")
        table.add_column("sample")
        table.add_row("members", f"{reply.members:,}", " ".join(reply.sample_user_ids))
        table.add_row(
            f"would enter (vs v{reply.live_version})" if reply.live_version else "would enter",
            f"{reply.entering:,}",
            " ".join(reply.entering_sample),
        )
        table.add_row("would exit", f"{reply.exiting:,}", " ".join(reply.exiting_sample))
        output.stdout().print(table)
        output.stdout().print(f"evaluated in {reply.took.ToTimedelta().total_seconds():.3f} s")


@app.command("diff")
def diff(
    ctx: typer.Context,
    file: FileOption,
    sample: Annotated[int, typer.Option(min=0, max=1000, help="User ids to show.")] = 20,
    min_position: MinPositionOption = 0,
) -> None:
    """How the segments in FILE differ from the live ones: definition and members."""
    target = target_of(ctx)

    async def run() -> None:
        async with Connection(target, "projector") as conn:
            stub = SegmentServiceStub(conn.channel)
            for spec in _load(file):
                current = await _current(conn, spec.segment_id)
                before = (
                    yaml.safe_dump(condition_to_dict(current.condition), sort_keys=False)
                    if current is not None
                    else ""
                )
                # Both sides in the service's normal form, so only real differences show.
                after = yaml.safe_dump(
                    condition_to_dict(segment_message(spec).condition), sort_keys=False
                )
                lines = list(
                    difflib.unified_diff(
                        before.splitlines(),
                        after.splitlines(),
                        f"{spec.segment_id} (live v{current.version})" if current else "(none)",
                        f"{spec.segment_id} ({file})",
                        lineterm="",
                    )
                )
                console = output.stdout()
                console.print(
                    "\n".join(lines) if lines else f"{spec.segment_id}: same definition",
                    markup=False,
                )
                reply = await conn.unary(
                    stub.PreviewSegment,
                    segments_pb2.PreviewSegmentRequest(
                        segment=segment_message(spec),
                        sample_size=sample,
                        min_position=min_position,
                    ),
                    deadline_s=600,
                )
                console.print(
                    f"members {reply.members:,}: {reply.entering:,} would enter"
                    f" ({' '.join(reply.entering_sample) or '-'}), {reply.exiting:,} would exit"
                    f" ({' '.join(reply.exiting_sample) or '-'})",
                    markup=False,
                )

    asyncio.run(run())


@app.command("archive")
def archive(
    ctx: typer.Context, segment_id: Annotated[str, typer.Argument(help="The segment's id.")]
) -> None:
    """Archive a segment: every member exits (published), no more changes."""
    ask(
        target_of(ctx),
        "projector",
        SegmentServiceStub,
        "ArchiveSegment",
        segments_pb2.ArchiveSegmentRequest(segment_id=segment_id),
    )
    output.stdout().print(f"{segment_id}: archived")


@app.command("restore")
def restore(
    ctx: typer.Context,
    segment_id: Annotated[str, typer.Argument(help="The segment's id.")],
    version: Annotated[int, typer.Argument(min=1, help="The version to bring back.")],
    silent: Annotated[bool, typer.Option(help="Switch without publishing.")] = False,
) -> None:
    """Make an earlier version's definition the newest version (built from history)."""
    reply = ask(
        target_of(ctx),
        "projector",
        SegmentServiceStub,
        "RestoreSegmentVersion",
        segments_pb2.RestoreSegmentVersionRequest(
            segment_id=segment_id, version=version, silent=silent
        ),
    )
    output.stdout().print(
        f"{segment_id}: v{reply.segment.version} has v{version}'s definition; building"
    )


# The reads (list, get, members, history, check) follow the writes in `--help`.
app.registered_commands.extend(reads.registered_commands)
