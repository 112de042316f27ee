"""`cohortflow rebuild`: every read model again from the full history, checked, swapped.

It runs here, against the database (not through a service): a fresh schema is filled
by folding the whole log with the projector's own engine and policies, beside the live
projector and without publishing anything. `--check` then compares the rebuilt change
sequence with the live one; `--swap` (live projector stopped) puts the rebuilt tables
in place in one transaction. In a partitioned deployment it rebuilds and checks every
partition (or the one `--partition` names), each from its own log.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
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
PartitionOption = Annotated[
    int | None,
    typer.Option(
        "--partition",
        min=0,
        show_default=False,
        help="Only this partition of a partitioned deployment (default: every partition).",
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
    partition: PartitionOption = None,
) -> None:
    """Rebuild lifecycle, RFM and segment read models from the full event history.

    With --check the rebuilt schema is dropped afterwards (pass or fail, also on Ctrl-C)
    unless --keep; with neither --check nor --swap it is kept, and the command says how to
    drop it. A partitioned deployment is rebuilt and checked per partition.
    """
    # Imported here: the rest of the CLI is a gRPC client and need not load the projector.
    from services.projector import rebuild as rebuilding

    url = database_url or dev_address(DEV_DATABASE_FILE, DEFAULT_DATABASE_URL)
    name = schema_name or f"rebuild_{int(time.time())}"
    loaded = policies_of(policies)
    from services.admin.partitioned import deployment_of, partitions_of, rebuild_partitioned

    deployment = deployment_of(url)
    partitions = partitions_of(deployment, partition)
    if deployment.partitions > 1:
        if swap:
            msg = (
                "--swap is for a one-partition deployment; this one has"
                f" {deployment.partitions} partitions (use --check)"
            )
            raise typer.BadParameter(msg, param_hint="--swap")
        rebuild_partitioned(deployment, name, loaded, partitions, check=check, keep=keep)
        return
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


def leave_all(urls: list[str], name: str, *, keep: bool) -> str:
    """`leave` in each database of a rebuild, in one line."""
    from services.projector import rebuild as rebuilding

    return "; ".join(rebuilding.leave(url, name, keep=keep) for url in urls)


@contextmanager
def cleaned_up(
    urls: str | list[str], name: str, step: str, *, keep: bool = False
) -> Iterator[None]:
    """Whatever ends `step` early (a failure, Ctrl-C or SIGTERM, a DIFFERENT check) drops the
    rebuild's schema `name` (in each of `urls`) unless `keep`, and says so on the same line."""
    from services.projector import rebuild as rebuilding

    urls = [urls] if isinstance(urls, str) else urls
    url = urls[0]
    before = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    except rebuilding.SchemaExists as problem:  # not ours: nothing was made, nothing dropped
        raise CliError(str(problem)) from None
    except KeyboardInterrupt:
        output.error(f"interrupted; {leave_all(urls, name, keep=keep)}")
        raise typer.Exit(130) from None
    except typer.Exit:
        hint = "" if keep else " (--keep keeps it for inspection)"
        output.error(leave_all(urls, name, keep=keep) + hint)
        raise
    except CliError as failure:
        raise CliError(f"{failure}; {leave_all(urls, name, keep=keep)}") from None
    except Exception as error:  # the database is away or refuses: one line, no trace
        safe = rebuilding.without_password(url)
        left = leave_all(urls, name, keep=keep)
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

    return with_progress(
        [url],
        name,
        lambda show: rebuilding.rebuild(url, name, policies, until=until, on_progress=show),
        total=until,
        keep=keep,
    )


def with_progress(
    urls: list[str],
    name: str,
    run: Callable[[Callable[[RebuildProgress], None]], RebuildProgress],
    *,
    total: int | None = None,
    keep: bool = False,
) -> RebuildProgress:
    """`run(show)` (a rebuild into schema `name` in `urls`) under a progress bar; if it fails
    or is interrupted, the schema is dropped everywhere (unless `keep`) and the command ends
    saying so."""
    with (
        cleaned_up(urls, name, "rebuild", keep=keep),
        output.live_progress(
            f"rebuilding into {name}",
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
        ) as bar,
    ):
        task = bar.add_task("rebuild", total=total, rate="")

        def show(p: RebuildProgress) -> None:
            bar.update(
                task,
                total=p.head,
                completed=p.position,
                rate=f"{p.events_per_second:,.0f} positions/s",
            )

        return run(show)


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
