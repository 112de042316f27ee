"""The `cohortflow` command tree: global options, then one command per module.

These are the client commands (gRPC only); the entry point adds the operator commands of
services.admin (`rebuild`, `determinism`, `console-user`), which run server code here.

Global options become a `client.Target` in the context (`client.target_of(ctx)`), so a
command needs only its own arguments. To add a command group, define a `typer.Typer`
in its module and `app.add_typer(...)` it here.
"""

from __future__ import annotations

from typing import Annotated

import typer

from services.cli import (
    client,
    ingest_commands,
    profile_commands,
    segment_commands,
    segment_reads,
    simulate_command,
)
from services.cli.demo_commands import demo
from services.cli.erase_command import erase
from services.cli.history_jobs_command import history_imports
from services.cli.import_command import import_file

app = typer.Typer(
    name="cohortflow",
    help=(
        "Send app-user events to cohortflow, read profiles, lifecycle and segments,"
        " define segments, rebuild from history, simulate users."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def global_options(
    ctx: typer.Context,
    ingest: Annotated[
        str, typer.Option(envvar="COHORTFLOW_INGEST", help="host:port of the ingest service.")
    ] = client.DEFAULT_INGEST,
    projector: Annotated[
        str, typer.Option(envvar="COHORTFLOW_PROJECTOR", help="host:port of the projector.")
    ] = client.DEFAULT_PROJECTOR,
    campaign: Annotated[
        str, typer.Option(envvar="COHORTFLOW_CAMPAIGN", help="host:port of the campaign service.")
    ] = client.DEFAULT_CAMPAIGN,
    key: Annotated[
        str | None,
        typer.Option(
            envvar="COHORTFLOW_API_KEY",
            show_default=False,
            help="API key of the app (default: var/dev-api-key, written by `make run`).",
        ),
    ] = None,
) -> None:
    ctx.obj = client.Target(
        ingest=ingest, projector=projector, campaign=campaign, key=key or client.find_dev_key()
    )


app.command("track")(ingest_commands.track)
app.command("identify")(ingest_commands.identify)
app.command("import")(import_file)
app.command("erase")(erase)
app.command("history-imports")(history_imports)
app.command("profile")(profile_commands.profile)
app.command("lifecycle")(profile_commands.lifecycle)
app.command("timeline")(profile_commands.timeline)
app.command("simulate")(simulate_command.simulate)
app.command("demo")(demo)
app.add_typer(segment_commands.app, name="segments")
app.command("watch")(segment_reads.watch)
