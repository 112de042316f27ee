"""Gauges a partition worker reads from the database every round (about every second).

Each partition it holds: the log's head and the lag behind the position committed (the
runner sets them only when it resumes a partition). The process-wide outbox gauges: the
changes waiting in every database of the deployment (the alerts take the max over the
workers, which all see the same rows).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import structlog

from services.eventlog.partitioned import PartitionedLog
from services.projector import metrics as process
from services.projector.adapters.outbox import OutboxQueries
from services.projector.adapters.store import ProjectorStore
from services.projector.partitions import metrics

_log = structlog.get_logger("projector.gauges")


def refresh(
    log: PartitionedLog, positions: Mapping[int, int | None], stores: Iterable[ProjectorStore]
) -> None:
    """`positions`: the committed position of each partition held (None: still loading,
    left alone). A database that does not answer leaves the gauges as they were (its
    checks and alerts say so)."""
    try:
        for partition, position in positions.items():
            if position is None:
                continue
            head = log.head(partition)
            label = str(partition)
            metrics.PARTITION_HEAD.labels(label).set(head)
            metrics.PARTITION_LAG.labels(label).set(max(0, head - position))
        outboxes = [OutboxQueries(store) for store in stores]
        process.OUTBOX.set(sum(outbox.depth() for outbox in outboxes))
        process.OUTBOX_OLDEST.set(max(outbox.oldest_seconds() for outbox in outboxes))
    except Exception as error:
        _log.debug("gauges not refreshed", error=repr(error))
