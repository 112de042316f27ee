"""`cohortflow rebuild`: every read model again from the full history, checked, swapped.

It runs here, against the database (not through a service): a fresh schema is filled
by folding the whole log with the projector's own engine and policies, beside the live
projector and without publishing anything. `--check` then compares the rebuilt change
sequence with the live one; `--swap` (live projector stopped) puts the rebuilt tables
in place in one transaction.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

import typer
from rich.progress import MofNCompleteColumn, TextColumn, TimeRemainingColumn

from services.cli import output
from services.cli.client import CliError
from services.common.config import DEFAULT_DATABASE_URL
from services.projector.config import Policies

if TYPE_CHECKING:
    from services.projector.rebuild import Progress as RebuildProgress

# Written by `make run` (services/devstack): the URL of the database it started.
DEV_DATABASE_FILE = Path("var") / "database-url"

DatabaseOption = Annotated[
    str | None,
    typer.Option(
        envvar="DATABASE_URL",
        show_default=False,
        help="The suite's database (default: the one `make run` started, var/database-url).",
    ),
]
PoliciesOption = Annotated[
    str,
    typer.Option(
        envvar="PROJECTOR_POLICIES",
        help="The projector's lifecycle/RFM policies as JSON (use the live projector's).",
    ),
]


def dev_address(path: Path, default: str) -> str:
    """What `make run` wrote to `path` (in ./var), else `default`."""
    if path.is_file():
        text = path.read_text().strip()
        if text:
            return text
    return default


def policies_of(text: str) -> Policies:
    try:
        return Policies(_json(text))
    except ValueError as problem:
        raise typer.BadParameter(str(problem), param_hint="--policies") from None


def rebuild(
    database_url: DatabaseOption = None,
    schema_name: Annotated[
        str | None,
        typer.Option("--schema", show_default=False, help="Schema to build into (new)."),
    ] = None,
    policies: PoliciesOption = "",
    check: Annotated[
        bool, typer.Option("--check", help="Compare the rebuilt changes with the live ones.")
    ] = False,
    swap: Annotated[
        bool,
        typer.Option("--swap", help="Replace the live read models (stop the projector first)."),
    ] = False,
) -> None:
    """Rebuild lifecycle, RFM and segment read models from the full event history."""
    # Imported here: the rest of the CLI is a gRPC client and need not load the projector.
    from services.projector import rebuild as rebuilding

    url = database_url or dev_address(DEV_DATABASE_FILE, DEFAULT_DATABASE_URL)
    name = schema_name or f"rebuild_{int(time.time())}"
    loaded = policies_of(policies)
    console = output.stdout()
    done = rebuild_with_progress(url, name, loaded)
    console.print(
        f"rebuilt through position {done.position:,} into schema {name} in {done.seconds:,.1f} s"
        f" ({done.events_per_second:,.0f} positions/s)",
        markup=False,
    )
    if check:
        result = rebuilding.check(url, name)
        if not result.identical:
            output.error(f"check: DIFFERENT: {result.first_difference}")
            raise typer.Exit(1)
        console.print(
            f"check: identical: {result.compared:,} changes through position"
            f" {result.through_position:,}",
            markup=False,
        )
    if swap:
        try:
            retired = rebuilding.swap(url, name)
        except rebuilding.ProjectorRunning as problem:
            raise CliError(str(problem)) from None
        console.print(
            f"swapped: the rebuilt read models are live; the old ones are in schema {retired}",
            markup=False,
        )


def rebuild_with_progress(
    url: str, name: str, policies: Policies, until: int | None = None
) -> RebuildProgress:
    """Fold the log (to `until`, default its head) into schema `name`, with a progress bar."""
    from services.projector import rebuild as rebuilding

    with output.live_progress(
        f"rebuilding into {name}",
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
    ) as bar:
        task = bar.add_task("rebuild", total=until, rate="")

        def show(p: RebuildProgress) -> None:
            bar.update(
                task,
                total=p.head,
                completed=p.position,
                rate=f"{p.events_per_second:,.0f} positions/s",
            )

        try:
            return rebuilding.rebuild(url, name, policies, until=until, on_progress=show)
        except Exception as error:  # the database is away or refuses: one line, not a trace
            raise CliError(f"rebuild against {_safe(url)} failed: {error}") from None


def _json(text: str) -> dict[str, object]:
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as problem:
        raise ValueError(f"not JSON ({problem})") from None
    if not isinstance(data, dict):
        raise ValueError(
            'expected a JSON object such as {"*": {"lifecycle": {"late_limit_days": 30}}}'
        )
    return data


def _safe(url: str) -> str:
    """The URL without a password."""
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url
