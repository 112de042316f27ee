"""Rebuild every projector read model from the log into a fresh schema, check, swap.

    python -m services.projector.rebuild [--schema NAME] [--check] [--swap]

The rebuild runs beside the live projector: a process whose connections resolve
the read-model tables in a new schema (search_path), folding the whole log with
the same engine and policies, publishing nothing. `--check` compares the rebuilt
change sequence with the live one (everything up to the position both reached)
and prints the first difference, if any. `--swap` (with the live projector
stopped) moves the rebuilt tables in place of the live ones, and the contract views
(read_contract) onto them, in one transaction;
the live outbox stays, so nothing is published twice.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from services.common.jetstream import ChangeSubjects
from services.eventlog.keyring import ERASURES_TABLE
from services.eventlog.partitioned import PartitionLog
from services.eventlog.store import EventLog, open_event_log
from services.projector import read_contract, schema
from services.projector.adapters.follower import LogFollower
from services.projector.adapters.store import ProjectorStore, open_store
from services.projector.config import Policies
from services.projector.partitions.scope import SINGLE, Scope
from services.projector.rebuild_schema import (
    SUBJECT_PREFIX,
    SchemaExists,
    create_schema,
    drop_schema,
    drop_statement,
    leave,
    without_password,
)
from services.projector.runner import Projection

__all__ = [
    "SUBJECT_PREFIX",
    "SchemaExists",
    "check",
    "drop_schema",
    "drop_statement",
    "leave",
    "rebuild",
    "swap",
    "without_password",
]

# Tables a rebuild replaces; the outbox (what is still to be published) is not among them.
REBUILT_TABLES = [
    schema.PROFILES_TABLE,
    schema.CHANGES_TABLE,
    schema.APPS_TABLE,
    schema.ALIASES_TABLE,
    schema.META_TABLE,
    schema.FACTS_TABLE,
    schema.SEGMENTS_STATE_TABLE,
    schema.SEGMENTS_TABLE,
    schema.SEGMENT_VERSIONS_TABLE,
    schema.SEGMENT_MEMBERS_TABLE,
    schema.SEGMENT_BUILDS_TABLE,
    schema.SEGMENT_BUILD_PROGRESS_TABLE,
    schema.TRACKING_TABLE,
    schema.QUARANTINE_TABLE,
]
# Held by a running projector for its lifetime: a swap needs it free.
PROJECTOR_LOCK = 0x70726F6A6563  # "projec"
_COMPARED = (
    "change_id, app_id, user_id, sequence, kind, from_value, to_value, cause, event_ids,"
    " event_name, effective_us, recorded_us, position, correction, corrected_since_us, details"
)


@dataclass
class Progress:
    position: int
    head: int
    events_per_second: float
    seconds: float

    @property
    def eta_seconds(self) -> float:
        if self.events_per_second <= 0:
            return float("inf")
        return max(0.0, (self.head - self.position) / self.events_per_second)


def use_schema(name: str) -> None:
    """Make every connection this process opens from now on see `name` first."""
    os.environ["PGOPTIONS"] = f"-c search_path={name},public"


def rebuild(
    database_url: str,
    name: str,
    policies: Policies,
    *,
    until: int | None = None,
    on_progress: Callable[[Progress], None] = lambda p: None,
) -> Progress:
    """Fold the log up to `until` (default: its head now) into schema `name` (new: a schema
    that exists is refused with SchemaExists). On failure or Ctrl-C the schema stays, with
    no connection of this process left on it: the caller drops it (`drop_schema`)."""
    create_schema(database_url, name)
    use_schema(name)
    with ExitStack() as closing:
        log = open_event_log(database_url, pool_size=2)
        closing.callback(log.close)
        store = open_store(
            database_url, ChangeSubjects(SUBJECT_PREFIX), pool_size=3, schema_name=name
        )
        closing.callback(store.datastore.close)
        head = until if until is not None else log.head_position()
        started = time.perf_counter()
        reported = Reporter(head, on_progress)
        done = fold(log, store, database_url, policies, head, reported)
    elapsed = time.perf_counter() - started
    return Progress(done, head, done / max(elapsed, 1e-6), elapsed)


class Reporter:
    """Progress over `head` positions in all, at most twice a second (and at the end)."""

    def __init__(self, head: int, on_progress: Callable[[Progress], None]) -> None:
        self.head = head
        self._on_progress = on_progress
        self._started = time.perf_counter()
        self._last = 0.0

    def __call__(self, position: int) -> None:
        elapsed = time.perf_counter() - self._started
        if position >= self.head or elapsed - self._last >= 0.5:
            self._last = elapsed
            rate = position / max(elapsed, 1e-6)
            self._on_progress(Progress(position, self.head, rate, elapsed))


def fold(
    source: EventLog | PartitionLog,
    store: ProjectorStore,
    database_url: str,
    policies: Policies,
    head: int,
    on_commit: Callable[[int], None] = lambda position: None,
) -> int:
    """Fold `source` (the log, or one partition's) into `store` up to notification `head`
    with the projector's own engine; `on_commit(position)` after each commit. Returns the
    position reached."""
    follower = LogFollower(source, database_url, batch_size=2000, wait_s=0.2)
    stop = threading.Event()
    projection = Projection(source, store, follower, policies)

    def committed() -> None:
        if projection.position >= head:
            stop.set()
        on_commit(projection.position)

    projection._on_commit = committed
    if head > 0:
        projection.run(stop)
    return projection.position


@dataclass
class CheckResult:
    compared: int
    through_position: int
    first_difference: str | None

    @property
    def identical(self) -> bool:
        return self.first_difference is None


def check(
    database_url: str, name: str, scope: Scope = SINGLE, home_url: str | None = None
) -> CheckResult:
    """Compare the rebuilt change sequence with the live one, up to where both are (of the
    partition `scope` names; the whole sequence in a one-partition deployment), but for the
    changes of erased users (and their anonymous ids), whom the home database (`home_url`,
    default `database_url`) records."""
    erased = _erased(home_url or database_url)
    live_tracking = sql.SQL("public.{}").format(sql.Identifier(schema.TRACKING_TABLE))
    rebuilt_tracking = sql.SQL("{}.{}").format(
        sql.Identifier(name), sql.Identifier(schema.TRACKING_TABLE)
    )
    with ExitStack() as stack:
        conn = stack.enter_context(psycopg.connect(database_url))
        positions = []
        for table in (live_tracking, rebuilt_tracking):
            row = conn.execute(
                sql.SQL("SELECT notification_id FROM {} WHERE application_name = %s").format(table),
                (scope.log_name,),
            ).fetchone()
            positions.append(int(row[0]) if row else 0)
        through = scope.position(min(positions))
        # An erased user's changes before their erasure differ by design (the live fold read
        # their personal fields, the rebuild reads them erased): everyone else's must not.
        query = sql.SQL(
            "SELECT {cols} FROM {schema}.{table} c WHERE partition = %s AND position <= %s"
            " AND NOT (c.app_id || chr(31) || c.user_id) = ANY(%s) ORDER BY id"
        )
        live = conn.cursor(name="live_changes")
        live.execute(
            query.format(
                cols=sql.SQL(_COMPARED),
                schema=sql.Identifier("public"),
                table=sql.Identifier(schema.CHANGES_TABLE),
            ),
            (scope.partition, through, erased),
        )
        other = stack.enter_context(psycopg.connect(database_url)).cursor(name="rebuilt_changes")
        other.execute(
            query.format(
                cols=sql.SQL(_COMPARED),
                schema=sql.Identifier(name),
                table=sql.Identifier(schema.CHANGES_TABLE),
            ),
            (scope.partition, through, erased),
        )
        compared = 0
        while True:
            a, b = live.fetchmany(5000), other.fetchmany(5000)
            for x, y in zip(a, b, strict=False):
                if x != y:
                    return CheckResult(compared, through, _difference(compared, x, y))
                compared += 1
            if len(a) != len(b):
                extra = "live" if len(a) > len(b) else "rebuilt"
                return CheckResult(
                    compared, through, f"the {extra} sequence has more changes after #{compared}"
                )
            if not a:
                return CheckResult(compared, through, None)


def _erased(home_url: str) -> list[str]:
    """ "app<US>user" of every erased user and each of their anonymous ids."""
    with psycopg.connect(home_url) as conn:
        rows = conn.execute(f"SELECT app_id, user_id, subjects FROM public.{ERASURES_TABLE}")
        return [f"{app}\x1f{user}" for app, u, s in rows for user in (u, *(s or []))]


def _difference(index: int, live: tuple[Any, ...], rebuilt: tuple[Any, ...]) -> str:
    names = [c.strip() for c in _COMPARED.split(",")]
    fields = [
        f"{n}: live={a!r} rebuilt={b!r}"
        for n, a, b in zip(names, live, rebuilt, strict=True)
        if a != b
    ]
    return f"change #{index + 1} differs (position {live[12]}): " + "; ".join(fields)


class ProjectorRunning(RuntimeError):
    pass


def swap(database_url: str, name: str) -> str:
    """Put the rebuilt tables in place (the live projector must be stopped). Returns the
    schema the replaced tables were moved to."""
    retired = f"{name}_replaced"
    with psycopg.connect(database_url, autocommit=True) as conn:
        locked = conn.execute("SELECT pg_try_advisory_lock(%s)", (PROJECTOR_LOCK,)).fetchone()
        if not locked or not locked[0]:
            msg = "a projector is running against this database; stop it before swapping"
            raise ProjectorRunning(msg)
        try:
            with conn.transaction():
                conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(retired)))
                for table in REBUILT_TABLES:
                    conn.execute(
                        sql.SQL("ALTER TABLE public.{} SET SCHEMA {}").format(
                            sql.Identifier(table), sql.Identifier(retired)
                        )
                    )
                    conn.execute(
                        sql.SQL("ALTER TABLE {}.{} SET SCHEMA public").format(
                            sql.Identifier(name), sql.Identifier(table)
                        )
                    )
                # The contract views followed the old tables: point them at the new ones.
                conn.execute("SET LOCAL search_path TO public")
                for statement in read_contract.STATEMENTS:
                    conn.execute(statement)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (PROJECTOR_LOCK,))
    return retired


def main(argv: list[str] | None = None) -> int:
    import argparse
    import signal
    import sys

    from services.projector.config import ProjectorSettings

    parser = argparse.ArgumentParser(prog="python -m services.projector.rebuild")
    parser.add_argument("--schema", default=f"rebuild_{int(time.time())}")
    parser.add_argument("--check", action="store_true", help="compare with the live changes")
    parser.add_argument("--swap", action="store_true", help="replace the live read models")
    parser.add_argument("--keep", action="store_true", help="keep the schema after --check")
    args = parser.parse_args(argv)
    settings = ProjectorSettings()
    url, name = settings.database_url, args.schema
    if settings.deployment().partitions > 1:
        print(
            "rebuild: this deployment is partitioned; use `cohortflow rebuild --check"
            " [--partition N]`",
            file=sys.stderr,
        )
        return 2

    def show(p: Progress) -> None:
        print(
            f"rebuild: {p.position:,}/{p.head:,} ({p.events_per_second:,.0f} positions/s,"
            f" ETA {p.eta_seconds:,.0f} s)",
            file=sys.stderr,
            flush=True,
        )

    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        done = rebuild(url, name, settings.load_policies(), on_progress=show)
    except SchemaExists as problem:
        print(f"rebuild: {problem}", file=sys.stderr)
        return 1
    except BaseException:
        print(f"rebuild: failed; {leave(url, name, keep=args.keep)}", file=sys.stderr)
        raise
    print(f"rebuilt through position {done.position:,} into schema {name} in {done.seconds:,.1f} s")
    code = 0
    try:
        if args.check:
            result = check(url, name)
            if result.identical:
                print(
                    f"check: identical: {result.compared:,} changes through position"
                    f" {result.through_position:,}"
                )
            else:
                print(f"check: DIFFERENT: {result.first_difference}")
                code = 1
        if args.swap and code == 0:
            retired = swap(url, name)
            print(
                f"swapped: the rebuilt read models are live; the old ones are in {retired}"
                f" (drop it when done: {drop_statement(retired)})"
            )
    finally:
        print(leave(url, name, keep=args.keep or not (args.check or args.swap)), file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
