"""`cohortflow determinism`: simulate, record the change stream, rebuild, compare.

The suite's promise is that history is the source of truth: folding the log again
must give exactly the changes that were published live. This command checks it end
to end on a running suite. It marks the change stream, drives a simulated population
through ingest, waits until the live projector has folded and published everything,
reads what was published after the mark, rebuilds every read model from the whole
log into a fresh schema, and compares the two sequences change by change.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from services.admin.rebuild_command import (
    DEV_DATABASE_FILE,
    DatabaseOption,
    PartitionOption,
    PoliciesOption,
    dev_address,
    policies_of,
    rebuild_with_progress,
)
from services.cli import output
from services.cli.client import CliError, target_of
from services.cli.simulator import ConfigError, SimulationConfig, run_simulation
from services.common.config import DEFAULT_DATABASE_URL, DEFAULT_NATS_URL
from services.common.jetstream import ChangeStreamSettings

# Written by `make run` (services/devstack): the URL of the NATS server it started.
DEV_NATS_FILE = Path("var") / "nats-url"


def determinism(
    ctx: typer.Context,
    users: Annotated[int, typer.Option(min=1, help="Users to simulate.")] = 300,
    days: Annotated[float, typer.Option(min=0.01, help="Simulated days.")] = 14.0,
    seed: Annotated[
        int | None,
        typer.Option(show_default=False, help="Simulator seed (default: a fresh one, printed)."),
    ] = None,
    database_url: DatabaseOption = None,
    nats_url: Annotated[
        str | None,
        typer.Option(
            envvar="NATS_URL",
            show_default=False,
            help="The suite's NATS (default: the one `make run` started, var/nats-url).",
        ),
    ] = None,
    policies: PoliciesOption = "",
    keep: Annotated[bool, typer.Option(help="Keep the rebuilt schema for inspection.")] = False,
    partition: PartitionOption = None,
) -> None:
    """Simulate users, record the change stream, rebuild from the log, compare the two.

    On a partitioned deployment every partition (or the one --partition names) is replayed
    from its own log and compared with the changes it published."""
    from services.admin.partitioned import deployment_of, partitions_of, replay_partitioned
    from services.projector import rebuild as rebuilding
    from services.projector import replay_check
    from services.projector.partitions import settled

    target = target_of(ctx)
    key = target.required_key()
    db = database_url or dev_address(DEV_DATABASE_FILE, DEFAULT_DATABASE_URL)
    bus = nats_url or dev_address(DEV_NATS_FILE, DEFAULT_NATS_URL)
    loaded = policies_of(policies)
    stream = ChangeStreamSettings()
    chosen = seed if seed is not None else secrets.randbelow(1_000_000)
    config = SimulationConfig(users=users, days=days, seed=chosen, speed=0)
    try:
        config.window(datetime.now(UTC))
    except ConfigError as problem:
        raise typer.BadParameter(str(problem)) from None
    console = output.stdout()
    say = lambda line: console.print(line, markup=False, highlight=False)  # noqa: E731
    deployment = deployment_of(db)
    partitions = partitions_of(deployment, partition)
    heads: dict[int, int] = {}

    async def settle() -> int:
        if deployment.partitions == 1:
            return await replay_check.wait_settled(db)
        heads.update(await settled.wait_settled(deployment))
        return sum(heads.values())

    async def record_and_simulate() -> tuple[list[replay_check.Published], int]:
        try:
            mark = await replay_check.stream_mark(bus, stream)
        except Exception as error:
            raise CliError(f"cannot read stream {stream.stream} at {bus}: {error}") from None
        say(f"change stream {stream.stream} marked at sequence {mark.last_sequence:,}")
        summary = await run_simulation(config, target.ingest, key)
        say(
            f"simulated {users:,} users over {days:g} days (seed {chosen}):"
            f" {summary.accepted:,} events accepted, {summary.duplicate:,} duplicate retries,"
            f" {summary.late_events:,} late"
        )
        try:
            head = await settle()
        except TimeoutError as problem:
            raise CliError(str(problem)) from None
        recorded = await replay_check.read_changes(bus, stream, mark)
        where = "the log head is" if deployment.partitions == 1 else "the partitions' heads add to"
        say(f"recorded {len(recorded):,} published changes; {where} {head:,}")
        if not summary.accepted or not recorded:
            msg = (
                "nothing to compare: the simulation added no events or no changes were"
                f" published (seed {chosen} may have run before; try another --seed)"
            )
            raise CliError(msg)
        return recorded, head

    recorded, head = asyncio.run(record_and_simulate())
    name = f"determinism_{int(time.time())}_{chosen}"
    if deployment.partitions > 1:
        replay_partitioned(deployment, name, loaded, partitions, recorded, heads, keep=keep)
        return
    done = rebuild_with_progress(db, name, loaded, until=head, keep=keep)
    say(f"rebuilt positions 1..{done.position:,} in {done.seconds:,.1f} s")
    try:
        result = replay_check.compare(
            recorded, replay_check.rebuilt_changes(db, name, rebuilding.SUBJECT_PREFIX), head
        )
    finally:
        if not keep:
            rebuilding.drop_schema(db, name)
    if not result.identical:
        output.error(f"DIFFERENT: {result.first_difference}")
        raise typer.Exit(1)
    say(
        f"identical: {result.compared:,} changes published live (positions"
        f" {result.first_position:,}..{result.through_position:,}) equal the replay's,"
        " one by one"
    )
