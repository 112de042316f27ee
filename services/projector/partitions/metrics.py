"""Metrics of partitioned projection: leases and each partition's progress."""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge

LEASE_CHANGES = Counter(
    "cohortflow_projector_lease_changes_total",
    "Partition leases acquired, released or lost (the lease connection broke)",
    ["change"],
)
PARTITION_HELD = Gauge(
    "cohortflow_projector_partition_held", "1 while this process folds the partition", ["partition"]
)
WORKERS_LIVE = Gauge("cohortflow_projector_workers_live", "Projector workers holding presence")
PARTITION_POSITION = Gauge(
    "cohortflow_projector_partition_position",
    "Last notification id of the partition committed",
    ["partition"],
)
PARTITION_HEAD = Gauge(
    "cohortflow_projector_partition_head", "Last notification id written", ["partition"]
)
PARTITION_LAG = Gauge(
    "cohortflow_projector_partition_lag_events",
    "Partition head minus committed position",
    ["partition"],
)
PARTITIONS = Gauge("cohortflow_projector_partitions", "Partitions of the deployment (P)")
PARTITIONS_UNHELD = Gauge(
    "cohortflow_projector_partitions_unheld",
    "Partitions whose lease no worker holds, as this worker saw at its last look (every second)",
)


def forget_partition(partition: int) -> None:
    """Drop a partition's progress series when this process stops folding it: its next
    holder reports them, and a stale lag here would keep an alert firing."""
    for gauge in (PARTITION_POSITION, PARTITION_HEAD, PARTITION_LAG):
        with contextlib.suppress(KeyError):
            gauge.remove(str(partition))
