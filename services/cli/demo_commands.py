"""`cohortflow demo`: example segments and campaigns, a simulated population, a live view."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from services.cli import output
from services.cli.client import target_of
from services.cli.demo.files import DEMO_FILES, DemoFileError, load
from services.cli.demo.run import DemoOptions, run_demo
from services.cli.demo.view import summary_lines
from services.cli.simulator import ConfigError, SimulationConfig


def demo(
    ctx: typer.Context,
    users: Annotated[int, typer.Option(min=1, help="Users to simulate.")] = 1000,
    days: Annotated[
        float, typer.Option(min=0.01, help="Simulated days of history, ending today.")
    ] = 30.0,
    speed: Annotated[
        float,
        typer.Option(min=0, help="Simulated seconds per real second (0: as fast as possible)."),
    ] = 86_400.0,
    seed: Annotated[int, typer.Option(help="Same seed and day: the same users and events.")] = 1,
    once: Annotated[
        bool,
        typer.Option(
            "--once", help="Run the simulation, wait until everything settled, print a summary."
        ),
    ] = False,
    duration: Annotated[
        float, typer.Option(min=0, help="Stop after this many seconds and print a summary.")
    ] = 0.0,
    files: Annotated[
        Path,
        typer.Option(
            help="Folder with segments.yaml and campaigns.yaml.",
            file_okay=False,
            exists=True,
        ),
    ] = DEMO_FILES,
) -> None:
    """Apply example segments and campaigns, simulate users, and watch what happens live.

    Segments and campaigns from FILES are created or updated (idempotently), then the
    simulator sends USERS users' history of DAYS days through ingest while a dashboard
    shows lifecycle counts, segment sizes, campaign sends and the projector's lag.
    Ctrl-C stops; --once or --duration end by themselves with a plain summary.
    """
    target = target_of(ctx)
    target.required_key()
    try:
        demo_files = load(files)
    except DemoFileError as problem:
        raise typer.BadParameter(str(problem), param_hint="--files") from None
    config = SimulationConfig(users=users, days=days, seed=seed, speed=speed)
    try:
        config.window(datetime.now(UTC))
    except ConfigError as problem:
        raise typer.BadParameter(str(problem)) from None
    console = output.stdout()
    options = DemoOptions(simulation=config, once=once, duration_s=duration)
    outcome = asyncio.run(
        run_demo(
            target,
            demo_files,
            options,
            console,
            lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True),
        )
    )
    if once or duration or not console.is_terminal:
        for line in summary_lines(outcome.snapshot, outcome.progress):
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    if once and not outcome.settled:
        output.error("the demo did not settle; the figures above may still move")
        raise typer.Exit(1)
