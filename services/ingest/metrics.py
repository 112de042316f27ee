"""Ingest's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

EVENTS = Counter(
    "cohortflow_ingest_events_total",
    "Events by outcome (accepted, duplicate, rejected) and kind (track, identify)",
    ["outcome", "kind"],
)
CALL_BATCH_SIZE = Histogram(
    "cohortflow_ingest_call_events",
    "Events per TrackBatch call",
    buckets=(1, 10, 50, 100, 250, 500, 750, 1000),
)
APPEND_BATCH_SIZE = Histogram(
    "cohortflow_ingest_append_batch_events",
    "Events per event-store transaction (after micro-batching concurrent calls)",
    buckets=(1, 2, 5, 10, 50, 100, 250, 500, 1000, 2000, 5000),
)
APPEND_SECONDS = Histogram(
    "cohortflow_ingest_append_seconds",
    "Latency of one event-store transaction",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
APPEND_FAILURES = Counter(
    "cohortflow_ingest_append_failures_total", "Event-store transactions that failed"
)

HTTP_REQUESTS = Counter(
    "cohortflow_ingest_http_requests_total",
    "Requests to the Segment-compatible HTTP API by path and status code",
    ["path", "code"],
)
HTTP_REFUSALS = Counter(
    "cohortflow_ingest_http_refusals_total",
    "HTTP requests or calls refused, by reason (auth, size, content_type, encoding, json,"
    " invalid, unavailable, ...)",
    ["reason"],
)
HTTP_CALLS = Counter(
    "cohortflow_ingest_http_calls_total",
    "Segment calls received over HTTP by type (track, identify, ...) and outcome"
    " (accepted, duplicate, rejected)",
    ["type", "outcome"],
)
HTTP_SECONDS = Histogram(
    "cohortflow_ingest_http_request_seconds",
    "Latency of HTTP API requests, from the body read to the answer (the commit included)",
    ["path"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
