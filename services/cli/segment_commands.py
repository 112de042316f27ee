"""`cohortflow segments ...` and `cohortflow watch`: define, preview, inspect, follow segments."""

from __future__ import annotations

import asyncio
import difflib
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer
import yaml
from cohortflow.changes.v1 import changes_pb2
from cohortflow.segments.v1 import segments_pb2
from cohortflow.segments.v1.segments_pb2_grpc import SegmentServiceStub
from rich.progress import MofNCompleteColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from services.cli import output
from services.cli.client import (
    CliError,
    Connection,
    Target,
    ask,
    describe_rpc_error,
    target_of,
)
from services.cli.segment_apply import UNCHANGED, apply_segments, segment_message
from services.cli.segment_files import SegmentFileError, SegmentSpec, load_segments
from services.cli.values import BadValue, parse_time, timestamp
from services.common.segment_wire import FINAL_BUILD_STATUSES, BuildStatus, condition_to_dict

app = typer.Typer(help="Define, preview and inspect segments.", no_args_is_help=True)

FileOption = Annotated[
    Path, typer.Option("--file", "-f", help="A YAML file with one segment or `segments:`.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")]
MinPositionOption = Annotated[
    int,
    typer.Option(
        min=0, help="Wait until the projector has read the log this far (e.g. after track)."
    ),
]


def _as_of(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return timestamp(parse_time(text))
    except BadValue as problem:
        raise typer.BadParameter(str(problem), param_hint="--as-of") from None


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


async def _all_pages(target: Target, method: str, request: Any, field: str) -> list[Any]:
    """Every item of a paged SegmentService list call (`field` of each page)."""
    found: list[Any] = []
    async with Connection(target, "projector") as conn:
        call = getattr(SegmentServiceStub(conn.channel), method)
        while True:
            page = await conn.unary(call, request)
            found.extend(getattr(page, field))
            if not page.next_page_token:
                return found
            request.page_token = page.next_page_token


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


@app.command("list")
def list_segments(
    ctx: typer.Context,
    archived: Annotated[bool, typer.Option(help="Include archived segments.")] = False,
) -> None:
    """The app's segments: state, versions, size."""
    target = target_of(ctx)

    request = segments_pb2.ListSegmentsRequest(page_size=1000, show_archived=archived)
    found = asyncio.run(_all_pages(target, "ListSegments", request, "segments"))
    table = Table()
    for column in ("segment", "state", "live", "latest", "members", "name"):
        table.add_column(
            column, justify="right" if column in ("live", "latest", "members") else "left"
        )
    for s in found:
        state = segments_pb2.Segment.State.Name(s.state).removeprefix("STATE_").lower()
        table.add_row(
            s.segment_id,
            state,
            f"v{s.active_version}",
            f"v{s.version}",
            f"{s.size:,}",
            s.display_name,
        )
    output.stdout().print(table)


@app.command("get")
def get(
    ctx: typer.Context,
    segment_id: Annotated[str, typer.Argument(help="The segment's id.")],
    version: Annotated[int, typer.Option(min=0, help="A past version (0: latest).")] = 0,
    json: JsonOption = False,
) -> None:
    """A segment's definition (as YAML), state, size and build progress."""
    reply = ask(
        target_of(ctx),
        "projector",
        SegmentServiceStub,
        "GetSegment",
        segments_pb2.GetSegmentRequest(segment_id=segment_id, version=version),
    )
    s = reply.segment
    if json:
        output.print_json(s)
        return
    console = output.stdout()
    state = segments_pb2.Segment.State.Name(s.state).removeprefix("STATE_").lower()
    console.print(
        f"{s.segment_id} v{s.version} ({state}; live v{s.active_version}, {s.size:,} members)"
        f" - {s.display_name}",
        markup=False,
    )
    if s.HasField("build"):
        b = s.build
        console.print(
            f"build of v{b.version}: {b.status}, {b.events_done:,}/{b.events_total:,} events,"
            f" {b.events_per_second:,.0f} events/s" + (f" ({b.error})" if b.error else ""),
            markup=False,
        )
    console.print(
        yaml.safe_dump({"condition": condition_to_dict(s.condition)}, sort_keys=False), markup=False
    )


@app.command("members")
def members(
    ctx: typer.Context,
    segment_id: Annotated[str, typer.Argument(help="The segment's id.")],
    as_of: Annotated[str | None, typer.Option(help="Members at this ISO-8601 time.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many.")] = 100,
) -> None:
    """Members of a segment, now or as of a past time (with since when)."""
    target = target_of(ctx)
    when = _as_of(as_of)

    async def run() -> tuple[list[segments_pb2.Member], int]:
        shown: list[segments_pb2.Member] = []
        total = 0
        async with Connection(target, "projector") as conn:
            stub = SegmentServiceStub(conn.channel)
            token = ""
            while len(shown) < limit:
                request = segments_pb2.ListSegmentMembersRequest(
                    segment_id=segment_id, page_size=min(1000, limit - len(shown)), page_token=token
                )
                if when is not None:
                    request.as_of_time.CopyFrom(when)
                page = await conn.unary(stub.ListSegmentMembers, request)
                shown.extend(page.members)
                total = page.total_size
                token = page.next_page_token
                if not token:
                    break
        return shown, total

    shown, total = asyncio.run(run())
    table = Table(title=f"{segment_id}: {total:,} members" + (f" as of {as_of}" if as_of else ""))
    table.add_column("user")
    table.add_column("since")
    for m in shown:
        table.add_row(m.user_id, output.time_text(m.since_time))
    output.stdout().print(table)


def _direction(change: changes_pb2.MembershipChanged) -> str:
    return (
        changes_pb2.MembershipChanged.Direction.Name(change.direction)
        .removeprefix("DIRECTION_")
        .lower()
    )


def _cause(change: changes_pb2.MembershipChanged) -> str:
    cause = change.header.cause
    kind = changes_pb2.Cause.Kind.Name(cause.kind).removeprefix("KIND_").lower()
    if cause.event_ids:
        return f"{kind} ({cause.event_name or 'event'} {', '.join(cause.event_ids)})"
    return kind


@app.command("history")
def history(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="The user's id.")],
    segment_id: Annotated[str, typer.Option("--segment", help="Only this segment.")] = "",
) -> None:
    """Every entry and exit of a user, oldest first, with its cause (all pages)."""
    target = target_of(ctx)

    request = segments_pb2.ListMembershipHistoryRequest(
        user_id=user, segment_id=segment_id, page_size=1000
    )
    changes = asyncio.run(_all_pages(target, "ListMembershipHistory", request, "changes"))
    table = Table(title=f"{user}: segment history")
    for column in ("when", "segment", "version", "change", "cause", "position"):
        table.add_column(column)
    for c in changes:
        table.add_row(
            output.time_text(c.header.effective_time),
            c.segment_id,
            f"v{c.segment_version}",
            _direction(c),
            _cause(c),
            str(c.header.position),
        )
    output.stdout().print(table)


@app.command("check")
def check_membership(
    ctx: typer.Context,
    segment_id: Annotated[str, typer.Argument(help="The segment's id.")],
    user: Annotated[str, typer.Argument(help="The user's id.")],
    as_of: Annotated[str | None, typer.Option(help="At this ISO-8601 time.")] = None,
) -> None:
    """Whether a user is (or was) a member of a segment."""
    request = segments_pb2.CheckMembershipRequest(segment_id=segment_id, user_id=user)
    when = _as_of(as_of)
    if when is not None:
        request.as_of_time.CopyFrom(when)
    reply = ask(target_of(ctx), "projector", SegmentServiceStub, "CheckMembership", request)
    if reply.member:
        output.stdout().print(
            f"{user} is in {segment_id} (v{reply.version}) since"
            f" {output.time_text(reply.since_time)}",
            markup=False,
        )
    else:
        output.stdout().print(f"{user} is not in {segment_id}", markup=False)


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


def watch(
    ctx: typer.Context,
    segment_id: Annotated[str, typer.Option("--segment", help="Only this segment.")] = "",
    after_position: Annotated[
        int, typer.Option(min=0, help="Start after this log position (default: from the start).")
    ] = 0,
    count: Annotated[int | None, typer.Option("--max", min=1, help="Stop after this many.")] = None,
) -> None:
    """Tail segment entries and exits as they happen (Ctrl-C stops)."""
    target: Target = target_of(ctx)

    async def run() -> None:
        seen = 0
        async with Connection(target, "projector") as conn:
            stub = SegmentServiceStub(conn.channel)
            stream = stub.WatchMembershipChanges(
                segments_pb2.WatchMembershipChangesRequest(
                    segment_id=segment_id, after_position=after_position
                ),
                metadata=target.metadata(),
            )
            try:
                async for item in stream:
                    c = item.change
                    output.stdout().print(
                        f"{output.time_text(c.header.effective_time)}  {c.header.user_id}"
                        f" {_direction(c)} {c.segment_id} v{c.segment_version}  {_cause(c)}"
                        f"  @{c.header.position}",
                        markup=False,
                    )
                    seen += 1
                    if count is not None and seen >= count:
                        stream.cancel()
                        return
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.CANCELLED:  # type: ignore[attr-defined]
                    return
                raise CliError(describe_rpc_error(error, "projector", conn.address)) from None

    asyncio.run(run())
