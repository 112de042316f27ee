"""`cohortflow simulate`: a synthetic population through ingest, with a live summary."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated

import orjson
import typer
from rich.progress import TextColumn
from rich.table import Table

from services.cli import output
from services.cli.client import target_of
from services.cli.simulator import ConfigError, SimulationConfig, Summary, run_simulation
from services.cli.simulator.model import US_PER_S, Behaviour
from services.cli.values import BadValue, parse_time


def _when(us: int) -> str:
    return datetime.fromtimestamp(us / US_PER_S, UTC).strftime("%Y-%m-%d %H:%M")


def live_line(summary: Summary) -> str:
    return (
        f"{_when(summary.simulated_us)}  sent {summary.sent:,}  accepted {summary.accepted:,}"
        f"  duplicate {summary.duplicate:,}  rejected {summary.rejected:,}"
        f"  {summary.rate:,.0f}/s"
    )


def summary_table(summary: Summary) -> Table:
    table = Table(title="simulation", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    rows = (
        ("users", f"{summary.users:,}"),
        ("simulated", f"{_when(summary.window.start_us)} .. {_when(summary.window.end_us)} UTC"),
        ("sent", f"{summary.sent:,} ({summary.identifies:,} Identify)"),
        ("accepted", f"{summary.accepted:,}"),
        ("duplicate", f"{summary.duplicate:,} ({summary.retried_events:,} sent as retries)"),
        ("rejected", f"{summary.rejected:,}"),
        ("late events", f"{summary.late_events:,}"),
        ("calls", f"{summary.calls:,}"),
        ("elapsed", f"{summary.elapsed:.1f} s ({summary.rate:,.0f} events/s)"),
        ("example user", summary.example_user()),
    )
    for name, value in rows:
        table.add_row(name, value)
    return table


def simulate(
    ctx: typer.Context,
    users: Annotated[int, typer.Option(min=1, help="Users to simulate.")] = 1000,
    days: Annotated[float, typer.Option(min=0.01, help="Simulated days.")] = 30.0,
    seed: Annotated[int, typer.Option(help="Same seed and start: the same ids and events.")] = 1,
    speed: Annotated[
        float,
        typer.Option(min=0, help="Simulated seconds per real second (0: as fast as possible)."),
    ] = 86_400.0,
    rate: Annotated[float, typer.Option(min=0, help="Most events per second (0: no cap).")] = 0.0,
    start: Annotated[
        str | None,
        typer.Option(help="Start of simulated time, ISO-8601 (default: midnight UTC DAYS ago)."),
    ] = None,
    late: Annotated[float, typer.Option(min=0, max=1, help="Share of sessions sent late.")] = 0.03,
    duplicates: Annotated[
        float, typer.Option(min=0, max=1, help="Share of session batches sent twice.")
    ] = 0.02,
    batch_size: Annotated[int, typer.Option(min=1, max=1000, help="Events per call.")] = 500,
    concurrency: Annotated[int, typer.Option(min=1, max=32, help="Calls in flight.")] = 4,
    json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Simulate app users (installs, sessions, carts, orders, churn) through the ingest API."""
    target = target_of(ctx)
    try:
        begin = parse_time(start) if start else None
    except BadValue as problem:
        raise typer.BadParameter(str(problem), param_hint="--start") from None
    config = SimulationConfig(
        users=users,
        days=days,
        seed=seed,
        speed=speed,
        rate=rate,
        start=begin,
        batch_size=batch_size,
        concurrency=concurrency,
        behaviour=replace(Behaviour(), late_fraction=late, duplicate_fraction=duplicates),
    )
    try:
        config.window(datetime.now(UTC))
    except ConfigError as problem:
        raise typer.BadParameter(str(problem)) from None
    progress = output.live_progress("simulating", TextColumn("{task.fields[line]}"))
    task = progress.add_task("simulate", total=1.0, line="")

    def on_progress(summary: Summary) -> None:
        progress.update(task, completed=summary.progress, line=live_line(summary))

    key = target.required_key()
    with progress:
        summary = asyncio.run(run_simulation(config, target.ingest, key, on_progress))
    if json:
        sys.stdout.write(
            orjson.dumps(summary.as_dict(), option=orjson.OPT_INDENT_2).decode() + "\n"
        )
    else:
        output.stdout().print(summary_table(summary))
    if summary.rejected:
        for line in summary.rejections:
            output.problem(f"rejected {line}")
        output.error(f"ingest rejected {summary.rejected:,} simulated events")
        raise typer.Exit(1)
