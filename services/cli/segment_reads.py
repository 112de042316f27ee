"""`cohortflow segments list|get|members|history|check` and `cohortflow watch`: reading
segments, their members and membership changes (the writes are in segment_commands)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import grpc
import typer
import yaml
from cohortflow.changes.v1 import changes_pb2
from cohortflow.segments.v1 import segments_pb2
from cohortflow.segments.v1.segments_pb2_grpc import SegmentServiceStub
from rich.table import Table

from services.cli import output
from services.cli.client import CliError, Connection, Target, ask, describe_rpc_error, target_of
from services.cli.segment_options import JsonOption, as_of_option
from services.common.segment_wire import condition_to_dict

reads = typer.Typer()


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


@reads.command("list")
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


@reads.command("get")
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


@reads.command("members")
def members(
    ctx: typer.Context,
    segment_id: Annotated[str, typer.Argument(help="The segment's id.")],
    as_of: Annotated[str | None, typer.Option(help="Members at this ISO-8601 time.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many.")] = 100,
) -> None:
    """Members of a segment, now or as of a past time (with since when)."""
    target = target_of(ctx)
    when = as_of_option(as_of)

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


@reads.command("history")
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


@reads.command("check")
def check_membership(
    ctx: typer.Context,
    segment_id: Annotated[str, typer.Argument(help="The segment's id.")],
    user: Annotated[str, typer.Argument(help="The user's id.")],
    as_of: Annotated[str | None, typer.Option(help="At this ISO-8601 time.")] = None,
) -> None:
    """Whether a user is (or was) a member of a segment."""
    request = segments_pb2.CheckMembershipRequest(segment_id=segment_id, user_id=user)
    when = as_of_option(as_of)
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
