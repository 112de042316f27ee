"""A partitioned deployment for tests: its log, routing events as ingest does, and waits."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import psycopg

from services.eventlog.events import (
    AppClockTicked,
    ClockTicked,
    EventTracked,
    HistoryImportFinished,
    HistoryImportStarted,
    UserIdentified,
)
from services.eventlog.partitioned import PartitionedLog, open_partitioned_log
from services.eventlog.partitions import partition_of, user_key
from services.migrate import migrate
from tests.support.infra import PostgresForTests
from tests.support.logevents import DAY, HOUR, T0, identify, tick, track


@contextmanager
def partitioned_database(
    postgres: PostgresForTests, partitions: int, placement: str = ""
) -> Iterator[tuple[str, PartitionedLog]]:
    """A new home database migrated with `partitions` (placed as `placement` says), its
    URL and log; dropped afterwards."""
    url = postgres.create_database()
    log = open_partitioned_log(
        migrate(url, partitions=partitions, placement=placement), pool_size=1
    )
    try:
        yield url, log
    finally:
        log.close()
        postgres.drop_database(url)


# What ingest appends to every partition.
EVERYWHERE = (ClockTicked, HistoryImportStarted, AppClockTicked, HistoryImportFinished)


def route(
    log: PartitionedLog, events: Iterable[object], links: dict[tuple[str, str], str] | None = None
) -> None:
    """Append user events to their user's partition and ticks (and a history import's
    markers and app ticks) to every partition, in order (one transaction per run of
    events bound for the same partition). With `links`,
    as ingest does: an Identify naming both ids links them, and later events naming only
    the anonymous id go to the user's partition."""
    run: list[object] = []
    run_partition: int | None = None

    def flush() -> None:
        if run and run_partition is not None:
            log.append(run_partition, [log.encode(e) for e in run])

    for event in events:
        if isinstance(event, EVERYWHERE):
            flush()
            run, run_partition = [], None
            log.append_everywhere([log.encode(event)])
            continue
        assert isinstance(event, EventTracked | UserIdentified)
        user = event.user_id
        if links is not None:
            if isinstance(event, UserIdentified) and user and event.anonymous_id:
                links[(event.app_id, event.anonymous_id)] = user
            user = user or links.get((event.app_id, event.anonymous_id), "")
        partition = log.deployment.partition_of(event.app_id, user_key(user, event.anonymous_id))
        if partition != run_partition:
            flush()
            run, run_partition = [], partition
        run.append(event)
    flush()


def tracked(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT application_name, notification_id FROM projector_tracking")
        return {name: int(n) for name, n in rows}


async def wait_folded(log: PartitionedLog, within: float = 60) -> None:
    """Until every partition's read models have committed its whole log."""
    deployment = log.deployment
    deadline = asyncio.get_running_loop().time() + within
    while True:
        done = True
        for partition in range(deployment.partitions):
            url = deployment.database_of(partition)
            head = log.head(partition)
            if tracked(url).get(deployment.log_name(partition), 0) < head:
                done = False
        if done:
            return
        assert asyncio.get_running_loop().time() < deadline, "the partitions were not folded"
        await asyncio.sleep(0.1)


def builds_appended(log: PartitionedLog) -> int:
    """How many partition builds (SegmentPartitionBuilt) the partitions' logs hold."""
    deployment = log.deployment
    total = 0
    for partition in range(deployment.partitions):
        with psycopg.connect(deployment.database_of(partition)) as conn:
            row = conn.execute(
                f"SELECT count(*) FROM {deployment.log_name(partition)}_events WHERE topic LIKE %s",
                ("%:SegmentPartitionBuilt",),
            ).fetchone()
        total += int(row[0]) if row else 0
    return total


async def wait_live(log: PartitionedLog, segments: int, within: float = 90) -> None:
    """Until every partition has built and switched on `segments` segment versions."""
    deadline = asyncio.get_running_loop().time() + within
    while await asyncio.to_thread(builds_appended, log) < segments * log.partitions:
        assert asyncio.get_running_loop().time() < deadline, "segments not built everywhere"
        await asyncio.sleep(0.1)
    await wait_folded(log, within)


def apart(user: str, partitions: int) -> str:
    """An anonymous id whose partition (of `partitions`) is not `user`'s."""
    home = partition_of("app", user, partitions)
    return next(
        f"device-{i}"
        for i in range(1000)
        if partition_of("app", f"anonymous:device-{i}", partitions) != home
    )


def story(user: str, device: str) -> list[object]:
    """An anonymous history on `device`, then its Identify as `user`, and a straggler."""
    berlin = {"city": "Berlin", "country": "DE"}
    return [
        tick(T0),
        track("", T0 + HOUR, anonymous_id=device, context=berlin),
        track("", T0 + 2 * HOUR, "Added to Cart", anonymous_id=device),
        track("", T0 + 3 * HOUR, "Added to Cart", anonymous_id=device),
        tick(T0 + DAY),
        identify(user, T0 + DAY + HOUR, anonymous_id=device, traits={"plan": "pro"}),
        tick(T0 + DAY + 2 * HOUR),
        # Routed to the device's partition (it does not know the link yet): sent on.
        track("", T0 + DAY + 3 * HOUR, "Added to Cart", anonymous_id=device),
        track(user, T0 + 2 * DAY),
        tick(T0 + 3 * DAY),
        tick(T0 + 20 * DAY),
    ]
