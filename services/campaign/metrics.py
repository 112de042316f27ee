"""The campaign service's Prometheus metrics."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import Counter, Histogram

CHANGES = Counter(
    "cohortflow_campaign_changes_total",
    "Change messages by outcome (decided, redelivered, poison, retried)",
    ["outcome"],
)
DECISIONS = Counter(
    "cohortflow_campaign_decisions_total",
    "Delivery decisions by channel, status and reason",
    ["channel", "status", "reason"],
)
SENDS = Counter(
    "cohortflow_campaign_sends_total",
    "Provider calls by channel and outcome (sent, retry, failed, dead_letter)",
    ["channel", "outcome"],
)
RENDER_WORKERS_KILLED = Counter(
    "cohortflow_campaign_render_workers_killed_total",
    "Template render workers killed because a render did not finish in time",
)
BATCH_SECONDS = Histogram(
    "cohortflow_campaign_decide_batch_seconds",
    "Time to decide and record one batch of changes",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
SEND_SECONDS = Histogram(
    "cohortflow_campaign_send_seconds",
    "Latency of one provider call",
    ["channel"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def record_decisions(rows: Iterable[Any]) -> None:
    for row in rows:
        DECISIONS.labels(row.channel, row.status, row.reason).inc()
