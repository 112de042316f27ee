"""The partitioned log: one recorder per partition, sharing a pool per database.

Partition 0 is a whole eventsourcing application (`EventLog`): besides user events it
holds the app-wide facts (segment aggregates, RFM cut points), loaded through its
repository. Every other partition is a bare recorder of its own table on the pool of
the first partition placed in the same database, so P partitions in one database cost
one pool, not P.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import Mapper, StoredEvent

from services.eventlog.partitions import Deployment, encode_position
from services.eventlog.store import (
    AppendOutcome,
    EventLog,
    LogRecorder,
    append_new,
    open_event_log,
)


@dataclass(frozen=True)
class PartitionLog:
    """One partition's log as its projection reads it (EventLog offers the same)."""

    log_recorder: LogRecorder
    mapper: Mapper[Any]

    @property
    def recorder(self) -> LogRecorder:
        return self.log_recorder

    def head_position(self) -> int:
        return self.log_recorder.max_notification_id() or 0


@dataclass(frozen=True)
class PartitionAppend:
    """Positions (tokens naming the partition) of one append to one partition."""

    partition: int
    outcome: AppendOutcome

    def position(self, originator_id: Any) -> tuple[int, bool]:
        notification_id, duplicate = self.outcome.position(originator_id)
        return encode_position(self.partition, notification_id), duplicate


class PartitionedLog:
    def __init__(self, deployment: Deployment, home: EventLog, recorders: list[LogRecorder]):
        self.deployment = deployment
        self.home = home  # partition 0: the application of the app-wide facts
        self.recorders = recorders
        self._apps: list[EventLog] = [home]

    @property
    def partitions(self) -> int:
        return self.deployment.partitions

    @property
    def mapper(self) -> Mapper[Any]:
        return self.home.mapper

    def encode(self, event: Any) -> StoredEvent:
        return self.home.mapper.to_stored_event(event)

    def recorder(self, partition: int) -> LogRecorder:
        return self.recorders[partition]

    def partition_log(self, partition: int) -> PartitionLog:
        return PartitionLog(self.recorders[partition], self.home.mapper)

    def append(self, partition: int, stored: Sequence[StoredEvent]) -> PartitionAppend:
        """Store one-event originators in `partition` once each (one transaction)."""
        return PartitionAppend(partition, append_new(self.recorders[partition], stored))

    def append_everywhere(self, stored: Sequence[StoredEvent]) -> list[PartitionAppend]:
        """The same events in every partition (clock ticks): each once per partition."""
        return [self.append(p, stored) for p in range(self.partitions)]

    def head(self, partition: int) -> int:
        """The newest notification id of a partition (0 when empty)."""
        return self.recorders[partition].max_notification_id() or 0

    def close(self) -> None:
        for app in self._apps:
            app.close()


def open_partitioned_log(
    deployment: Deployment,
    *,
    create_table: bool = False,
    pool_size: int = 5,
    connect_timeout_s: int = 5,
) -> PartitionedLog:
    """The log of every partition of `deployment`, one pool per database."""
    options = {
        "create_table": create_table,
        "pool_size": pool_size,
        "connect_timeout_s": connect_timeout_s,
    }
    home = open_event_log(deployment.database_of(0), name=deployment.log_name(0), **options)
    apps = {deployment.database_of(0): home}
    recorders: list[LogRecorder] = [home.log_recorder]
    extra: list[EventLog] = []
    for partition in range(1, deployment.partitions):
        url = deployment.database_of(partition)
        name = deployment.log_name(partition)
        pooled = apps.get(url)
        if pooled is None:
            pooled = apps[url] = open_event_log(url, name=name, **options)
            extra.append(pooled)
            recorders.append(pooled.log_recorder)
            continue
        recorder = LogRecorder(pooled.log_recorder.datastore, events_table_name=f"{name}_events")
        if create_table:
            recorder.create_table()
        recorders.append(recorder)
    log = PartitionedLog(deployment, home, recorders)
    log._apps.extend(extra)
    return log
