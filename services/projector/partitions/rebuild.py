"""Rebuild and check a partitioned deployment: each partition, or every one of them.

Each partition's fold is a function of its own log: the app-wide facts (segment
definitions, RFM cut points), identity hand-overs and forwarded events are events in it,
appended there by the live relay. So a partition is rebuilt alone, by folding its log
(as it stands, mail and relayed copies included) into a fresh schema of its database with
the projector's own engine; nothing is mailed or relayed (the letters the replay would
send are in the log already). The check compares each partition's rebuilt change
sequence with its live one and names the partition of the first difference.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass

from services.common.jetstream import ChangeSubjects
from services.eventlog.partitioned import open_partitioned_log
from services.eventlog.partitions import Deployment, decode_position
from services.projector.adapters.store import open_store
from services.projector.config import Policies
from services.projector.partitions.scope import Scope
from services.projector.rebuild import (
    CheckResult,
    Progress,
    Reporter,
    check,
    fold,
    use_schema,
)
from services.projector.rebuild_schema import SUBJECT_PREFIX, create_schema


class UnknownPartition(ValueError):
    """A partition the deployment does not have."""


def chosen(deployment: Deployment, partition: int | None) -> list[int]:
    """The partitions a command works on: `partition`, or every one (None)."""
    if partition is None:
        return list(range(deployment.partitions))
    if not 0 <= partition < deployment.partitions:
        msg = (
            f"partition {partition} does not exist: this deployment has partitions"
            f" 0..{deployment.partitions - 1}"
        )
        raise UnknownPartition(msg)
    return [partition]


def databases_of(deployment: Deployment, partitions: Sequence[int]) -> list[str]:
    """The databases holding `partitions` (where a rebuild makes its schema), home first."""
    wanted = {deployment.database_of(p) for p in partitions}
    return [url for url in deployment.databases() if url in wanted]


def rebuild_partitions(
    deployment: Deployment,
    name: str,
    policies: Policies,
    partitions: Sequence[int],
    *,
    until: dict[int, int] | None = None,
    on_progress: Callable[[Progress], None] = lambda p: None,
) -> Progress:
    """Fold each of `partitions` up to its `until` notification id (default: its head now)
    into schema `name`, new in every database that holds one of them (SchemaExists if it
    is there). Progress counts notifications over all of them. On failure the schemas stay:
    the caller drops them (`leave` per database)."""
    databases = databases_of(deployment, partitions)
    for url in databases:
        create_schema(url, name)
    use_schema(name)
    started = time.perf_counter()
    with ExitStack() as closing:
        log = open_partitioned_log(deployment, pool_size=2)
        closing.callback(log.close)
        stores = {}
        for url in databases:
            stores[url] = open_store(
                url, ChangeSubjects(SUBJECT_PREFIX), pool_size=3, schema_name=name
            )
            closing.callback(stores[url].datastore.close)
        heads = {p: (until or {}).get(p, log.head(p)) for p in partitions}
        reporter = Reporter(sum(heads.values()), on_progress)
        before = 0
        for partition in partitions:
            url = deployment.database_of(partition)
            store = stores[url].for_partition(Scope(partition, deployment.partitions))
            offset = before
            before += fold(
                log.partition_log(partition),
                store,
                url,
                policies,
                heads[partition],
                lambda position, offset=offset: reporter(offset + position),  # type: ignore[misc]
            )
    elapsed = time.perf_counter() - started
    return Progress(before, reporter.head, before / max(elapsed, 1e-6), elapsed)


@dataclass(frozen=True)
class PartitionCheck:
    """The check of one partition's rebuilt changes against its live ones."""

    partition: int
    result: CheckResult

    def line(self) -> str:
        result = self.result
        if result.identical:
            _partition, through = decode_position(result.through_position)
            return (
                f"partition {self.partition}: identical: {result.compared:,} changes through"
                f" its notification {through:,}"
            )
        return f"partition {self.partition}: DIFFERENT: {result.first_difference}"


def check_partitions(
    deployment: Deployment, name: str, partitions: Sequence[int]
) -> list[PartitionCheck]:
    """Each partition's rebuilt change sequence (in schema `name`) against its live one."""
    return [
        PartitionCheck(
            p,
            check(
                deployment.database_of(p),
                name,
                Scope(p, deployment.partitions),
                home_url=deployment.home_url,
            ),
        )
        for p in partitions
    ]
