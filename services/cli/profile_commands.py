"""`cohortflow profile`, `lifecycle` and `timeline`: reads from the projector's ProfileService."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from cohortflow.profiles.v1 import profiles_pb2
from cohortflow.profiles.v1.profiles_pb2_grpc import ProfileServiceStub

from services.cli import output
from services.cli.client import Connection, Target, ask, target_of
from services.cli.profile_view import lifecycle_table, profile_panel, timeline_table
from services.cli.values import BadValue, parse_time, timestamp

JsonOption = Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")]
MinPositionOption = Annotated[
    int,
    typer.Option(
        min=0,
        help="Wait until the projector has read the log up to this position"
        " (the position `track` printed): read your writes.",
    ),
]


def profile(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="The user's id.")],
    min_position: MinPositionOption = 0,
    json: JsonOption = False,
) -> None:
    """Show a user's profile: lifecycle, RFM, activity, contacts, consent, traits."""
    request = profiles_pb2.GetProfileRequest(user_id=user, min_position=min_position)
    response = ask(target_of(ctx), "projector", ProfileServiceStub, "GetProfile", request)
    if json:
        output.print_json(response.profile)
    else:
        output.stdout().print(profile_panel(response.profile))


def lifecycle(
    ctx: typer.Context,
    as_of: Annotated[
        str | None, typer.Option(help="Counts as they were at this ISO-8601 time.")
    ] = None,
    min_position: MinPositionOption = 0,
    json: JsonOption = False,
) -> None:
    """How many users are in each lifecycle state, now or as of a past time."""
    request = profiles_pb2.GetLifecycleSummaryRequest(min_position=min_position)
    if as_of is not None:
        try:
            request.as_of_time.CopyFrom(timestamp(parse_time(as_of)))
        except BadValue as problem:
            raise typer.BadParameter(str(problem), param_hint="--as-of") from None
    response = ask(target_of(ctx), "projector", ProfileServiceStub, "GetLifecycleSummary", request)
    if json:
        output.print_json(response)
    else:
        output.stdout().print(lifecycle_table(response))


async def all_timeline_entries(
    target: Target, user: str, min_position: int = 0
) -> list[profiles_pb2.TimelineEntry]:
    """Every entry of a user's timeline, following next_page_token to the end."""
    entries: list[profiles_pb2.TimelineEntry] = []
    async with Connection(target, "projector") as conn:
        stub = ProfileServiceStub(conn.channel)
        token = ""
        while True:
            request = profiles_pb2.ListUserTimelineRequest(
                user_id=user, page_size=1000, page_token=token, min_position=min_position
            )
            page = await conn.unary(stub.ListUserTimeline, request)
            entries.extend(page.entries)
            token = page.next_page_token
            if not token:
                return entries


def timeline(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="The user's id.")],
    min_position: MinPositionOption = 0,
    json: JsonOption = False,
) -> None:
    """Every lifecycle and RFM change of a user, oldest first, with its cause (all pages)."""
    entries = asyncio.run(all_timeline_entries(target_of(ctx), user, min_position))
    if json:
        output.print_json(profiles_pb2.ListUserTimelineResponse(entries=entries))
    else:
        output.stdout().print(timeline_table(user, entries))
