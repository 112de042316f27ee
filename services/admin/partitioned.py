"""`rebuild` and `determinism` on a partitioned deployment: per partition, or all of them.

Each partition is rebuilt from its own log (app-wide facts, hand-overs and forwarded
events as they stand in it) into a fresh schema of its database; `--check` compares each
partition's rebuilt changes with its live ones, `determinism` each partition's published
changes with its replay. Every line of the outcome names its partition.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import typer

from services.admin.rebuild_command import cleaned_up, leave_all, with_progress
from services.cli import output
from services.cli.client import CliError
from services.projector.config import Policies

if TYPE_CHECKING:
    from services.eventlog.partitions import Deployment
    from services.projector.replay_check import Published


def deployment_of(url: str) -> Deployment:
    """The deployment the database records (its partitions and where they live, with
    COHORTFLOW_PLACEMENT from the environment)."""
    from services.common.config import ServiceSettings

    try:
        return ServiceSettings(DATABASE_URL=url).deployment()
    except Exception as error:  # unreachable, or settings that disagree with the record
        from services.projector.rebuild import without_password

        raise CliError(f"cannot read the deployment of {without_password(url)}: {error}") from None


def partitions_of(deployment: Deployment, partition: int | None) -> list[int]:
    from services.projector.partitions.rebuild import UnknownPartition, chosen

    try:
        return chosen(deployment, partition)
    except UnknownPartition as problem:
        raise typer.BadParameter(str(problem), param_hint="--partition") from None


def rebuild_partitioned(
    deployment: Deployment,
    name: str,
    policies: Policies,
    partitions: list[int],
    *,
    check: bool,
    keep: bool,
) -> None:
    """Rebuild `partitions` into schema `name` (in each database holding one), then with
    `check` compare each with its live changes, a line per partition."""
    from services.projector.partitions import rebuild as partitioned

    say = _say()
    urls = _rebuilt(deployment, name, policies, partitions, None, keep=keep)
    with cleaned_up(urls, name, "check", keep=keep):
        if check:
            checked = partitioned.check_partitions(deployment, name, partitions)
            for each in checked:
                if each.result.identical:
                    say("check: " + each.line())
                else:
                    output.error("check: " + each.line())
            if not all(each.result.identical for each in checked):
                raise typer.Exit(1)
    say(leave_all(urls, name, keep=keep or not check))


def replay_partitioned(
    deployment: Deployment,
    name: str,
    policies: Policies,
    partitions: list[int],
    recorded: list[Published],
    heads: dict[int, int],
    *,
    keep: bool,
) -> None:
    """Rebuild `partitions` up to their `heads` into schema `name`, then compare each
    partition's `recorded` changes (those whose position names it) with its replay."""
    from services.eventlog.partitions import decode_position, encode_position
    from services.projector import rebuild as rebuilding
    from services.projector import replay_check

    say = _say()
    urls = _rebuilt(deployment, name, policies, partitions, heads, keep=keep)
    compared, different = 0, False
    with cleaned_up(urls, name, "compare", keep=keep):
        for p in partitions:
            result = replay_check.compare(
                [r for r in recorded if decode_position(r.position)[0] == p],
                replay_check.rebuilt_changes(
                    deployment.database_of(p), name, rebuilding.SUBJECT_PREFIX, partition=p
                ),
                encode_position(p, heads[p]),
            )
            compared += result.compared
            if result.identical:
                say(
                    f"partition {p}: identical: {result.compared:,} changes published live"
                    f" (through its notification {heads[p]:,}) equal the replay's"
                )
            else:
                different = True
                output.error(f"partition {p}: DIFFERENT: {result.first_difference}")
        if different:
            raise typer.Exit(1)
    say(
        f"identical: {compared:,} changes published live equal the replay's, one by one, in"
        f" {len(partitions)} partitions"
    )
    say(leave_all(urls, name, keep=keep))


def _rebuilt(
    deployment: Deployment,
    name: str,
    policies: Policies,
    partitions: list[int],
    until: dict[int, int] | None,
    *,
    keep: bool,
) -> list[str]:
    """Rebuild `partitions` (to `until`, default their heads) under a progress bar, say
    so; the databases where schema `name` now is."""
    from services.projector.partitions import rebuild as partitioned

    urls = partitioned.databases_of(deployment, partitions)
    done = with_progress(
        urls,
        name,
        lambda show: partitioned.rebuild_partitions(
            deployment, name, policies, partitions, until=until, on_progress=show
        ),
        keep=keep,
    )
    shown = ", ".join(str(p) for p in partitions)
    _say()(
        f"rebuilt partitions {shown} ({done.position:,} positions) into schema {name} in"
        f" {done.seconds:,.1f} s ({done.events_per_second:,.0f} positions/s)"
    )
    return urls


def _say() -> Callable[[str], None]:
    console = output.stdout()
    return lambda line: console.print(line, markup=False, highlight=False)
