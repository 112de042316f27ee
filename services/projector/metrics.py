"""The projector's Prometheus metrics.

Partition workers report per partition under the label `partition` (the partition number,
as text): `services/projector/partitions/metrics.py` holds those series (lag, position,
held partitions, lease changes). The series here are the whole projector's.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PARTITION_LABEL = "partition"  # the label of every per-partition series

EVENTS = Counter("cohortflow_projector_events_total", "Log events applied")
BATCH_SIZE = Histogram(
    "cohortflow_projector_batch_events",
    "Log events per projector transaction",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
)
COMMIT_SECONDS = Histogram(
    "cohortflow_projector_batch_seconds",
    "Time to fold and commit one batch",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
CHANGES = Counter("cohortflow_projector_changes_total", "Changes derived", ["kind"])
POSITION = Gauge("cohortflow_projector_position", "Last log position committed")
HEAD = Gauge("cohortflow_projector_log_head", "Last log position written")
LAG = Gauge("cohortflow_projector_lag_events", "Log head minus committed position")
WATCHDOG_RECOVERIES = Counter(
    "cohortflow_projector_watchdog_recoveries_total",
    "Batches found by polling although no NOTIFY arrived",
)
BATCH_FAILURES = Counter(
    "cohortflow_projector_batch_failures_total", "Batches that failed and were retried"
)
PUBLISHED = Counter("cohortflow_projector_published_total", "Changes published on JetStream")
PUBLISH_FAILURES = Counter(
    "cohortflow_projector_publish_failures_total", "Relay rounds not fully acknowledged"
)
PUBLISH_SECONDS = Histogram(
    "cohortflow_projector_publish_seconds",
    "Time to publish and confirm one relay round",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
OUTBOX = Gauge("cohortflow_projector_outbox_depth", "Changes waiting in the outbox")
OUTBOX_OLDEST = Gauge(
    "cohortflow_projector_outbox_oldest_seconds",
    "Age of the oldest change waiting in the outbox (since its commit); 0 when empty",
)
LOCK_HELD = Gauge(
    "cohortflow_projector_lock_held",
    "1 while this process holds the projector lock (it is the one projecting), else 0",
)
LOCK_ACQUISITIONS = Counter(
    "cohortflow_projector_lock_acquisitions_total",
    "Times this process took the projector lock (at start, after a standby wait, or again"
    " after losing it with its connection)",
)
QUARANTINED_TOTAL = Counter(
    "cohortflow_projector_quarantined_total",
    "Log events isolated and skipped (recorded in the quarantine), by reason",
    ["reason"],
)
QUARANTINED = Gauge(
    "cohortflow_projector_quarantined_events", "Log events in the quarantine (all apps)"
)
STALLED = Gauge(
    "cohortflow_projector_stalled",
    "1 while the projection cannot commit (a failure, until the next commit succeeds)",
)
