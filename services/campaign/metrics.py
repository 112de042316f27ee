"""The campaign service's Prometheus metrics."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

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

# What waits. The consumer's counts come from JetStream (consumer info), so every replica
# reports the same shared consumer: alert on max(). Due sends are counted up to DUE_CAP.
CONSUMER_PENDING = Gauge(
    "cohortflow_campaign_consumer_pending",
    "Changes in the stream not yet delivered to the campaign consumer (JetStream num_pending)",
    ["consumer"],
)
CONSUMER_ACK_PENDING = Gauge(
    "cohortflow_campaign_consumer_ack_pending",
    "Changes delivered to campaign and not yet acknowledged (JetStream num_ack_pending)",
    ["consumer"],
)
CONSUMER_REDELIVERED = Gauge(
    "cohortflow_campaign_consumer_redelivered",
    "Changes delivered more than once and not yet acknowledged (JetStream num_redelivered)",
    ["consumer"],
)
CONSUMER_MAX_ACK_PENDING = Gauge(
    "cohortflow_campaign_consumer_max_ack_pending",
    "Unacknowledged changes at which JetStream stops delivering to the consumer",
    ["consumer"],
)
DUE_CAP = 100_000
SENDS_DUE = Gauge(
    "cohortflow_campaign_sends_due",
    "Sends due now and not dispatched (pending, or leased by a process that died),"
    f" by channel, counted up to {DUE_CAP:,}",
    ["channel"],
)
SENDS_DUE_OLDEST = Gauge(
    "cohortflow_campaign_sends_due_oldest_seconds",
    "How long the oldest due send of a channel has been waiting to be dispatched",
    ["channel"],
)


def record_decisions(rows: Iterable[Any]) -> None:
    for row in rows:
        DECISIONS.labels(row.channel, row.status, row.reason).inc()
