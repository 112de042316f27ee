"""`cohortflow rebuild`: every read model again from the full history, checked, swapped.

It runs here, against the database (not through a service): a fresh schema is filled
by folding the whole log with the projector's own engine and policies, beside the live
projector and without publishing anything. `--check` then compares the rebuilt change
sequence with the live one; `--swap` (live projector stopped) puts the rebuilt tables
in place in one transaction.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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
    keep: Annotated[
        bool,
        typer.Option("--keep", help="Keep the rebuilt schema after --check (or a failure)."),
    ] = False,
) -> None:
    """Rebuild lifecycle, RFM and segment read models from the full event history.

    With --check the rebuilt schema is dropped afterwards (pass or fail, also on Ctrl-C)
    unless --keep; with neither --check nor --swap it is kept, and the command says how to
    drop it.
    """
    # Imported here: the rest of the CLI is a gRPC client and need not load the projector.
    from services.projector import rebuild as rebuilding

    url = database_url or dev_address(DEV_DATABASE_FILE, DEFAULT_DATABASE_URL)
    name = schema_name or f"rebuild_{int(time.time())}"
    loaded = policies_of(policies)
    console = output.stdout()
    say = lambda line: console.print(line, markup=False, highlight=False)  # noqa: E731
    done = rebuild_with_progress(url, name, loaded, keep=keep)
    say(
        f"rebuilt through position {done.position:,} into schema {name} in {done.seconds:,.1f} s"
        f" ({done.events_per_second:,.0f} positions/s)"
    )
    with cleaned_up(url, name, "check" if check else "swap", keep=keep):
        if check:
            result = rebuilding.check(url, name)
            if not result.identical:
                output.error(f"check: DIFFERENT: {result.first_difference}")
                raise typer.Exit(1)
            say(
                f"check: identical: {result.compared:,} changes through position"
                f" {result.through_position:,}"
            )
        if swap:
            try:
                retired = rebuilding.swap(url, name)
            except rebuilding.ProjectorRunning as problem:
                raise CliError(str(problem)) from None
            say(
                f"swapped: the rebuilt read models are live; the old ones are in schema {retired}"
                f" (drop it when done: {rebuilding.drop_statement(retired)})"
            )
    say(rebuilding.leave(url, name, keep=keep or not (check or swap)))


@contextmanager
def cleaned_up(url: str, name: str, step: str, *, keep: bool = False) -> Iterator[None]:
    """Whatever ends `step` early (a failure, Ctrl-C or SIGTERM, a DIFFERENT check) drops the
    rebuild's schema `name` unless `keep`, and says so on the same line."""
    from services.projector import rebuild as rebuilding

    before = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    except rebuilding.SchemaExists as problem:  # not ours: nothing was made, nothing dropped
        raise CliError(str(problem)) from None
    except KeyboardInterrupt:
        output.error(f"interrupted; {rebuilding.leave(url, name, keep=keep)}")
        raise typer.Exit(130) from None
    except typer.Exit:
        hint = "" if keep else " (--keep keeps it for inspection)"
        output.error(rebuilding.leave(url, name, keep=keep) + hint)
        raise
    except CliError as failure:
        raise CliError(f"{failure}; {rebuilding.leave(url, name, keep=keep)}") from None
    except Exception as error:  # the database is away or refuses: one line, no trace
        safe = rebuilding.without_password(url)
        left = rebuilding.leave(url, name, keep=keep)
        raise CliError(f"{step} against {safe} failed: {error}; {left}") from None
    finally:
        signal.signal(signal.SIGTERM, before)


def rebuild_with_progress(
    url: str, name: str, policies: Policies, until: int | None = None, *, keep: bool = False
) -> RebuildProgress:
    """Fold the log (to `until`, default its head) into the new schema `name`, with a progress
    bar. If that fails or is interrupted, the schema is dropped (unless `keep`) and the
    command ends saying so."""
    from services.projector import rebuild as rebuilding

    with (
        cleaned_up(url, name, "rebuild", keep=keep),
        output.live_progress(
            f"rebuilding into {name}",
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
        ) as bar,
    ):
        task = bar.add_task("rebuild", total=until, rate="")

        def show(p: RebuildProgress) -> None:
            bar.update(
                task,
                total=p.head,
                completed=p.position,
                rate=f"{p.events_per_second:,.0f} positions/s",
            )

        return rebuilding.rebuild(url, name, policies, until=until, on_progress=show)


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
