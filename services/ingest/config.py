"""Ingest settings, read once from the environment."""

from __future__ import annotations

from pydantic import Field

from services.common.config import ServiceSettings
from services.ingest.domain.model import Limits


class IngestSettings(ServiceSettings):
    # host:port the gRPC API listens on.
    listen: str = Field("127.0.0.1:50051", alias="INGEST_LISTEN")
    # Worker processes sharing the port (SO_REUSEPORT); 1 serves in this process.
    workers: int = Field(1, alias="INGEST_WORKERS", ge=1, le=64)
    # Set by the supervisor for its workers.
    reuse_port: bool = Field(False, alias="COHORTFLOW_REUSE_PORT")
    # Prometheus metrics endpoint (0 disables it).
    metrics_port: int = Field(9101, alias="INGEST_METRICS_PORT")
    metrics_host: str = Field("127.0.0.1", alias="INGEST_METRICS_HOST")
    # Micro-batching of concurrent calls: events and stored bytes per transaction,
    # and transactions in flight at once. Keep bytes well under 4 MB (see notes).
    max_batch_events: int = Field(2000, alias="INGEST_MAX_BATCH_EVENTS", ge=1, le=10_000)
    max_batch_bytes: int = Field(2_000_000, alias="INGEST_MAX_BATCH_BYTES", ge=10_000)
    max_inflight: int = Field(2, alias="INGEST_MAX_INFLIGHT", ge=1, le=16)
    # Largest request (bytes) the gRPC server reads; larger ones get RESOURCE_EXHAUSTED.
    max_receive_bytes: int = Field(
        4 * 1024 * 1024, alias="INGEST_MAX_RECEIVE_BYTES", ge=64 * 1024, le=64 * 1024 * 1024
    )
    # Most events one TrackBatch call may carry.
    max_events_per_call: int = Field(1000, alias="INGEST_MAX_EVENTS_PER_CALL", ge=1, le=1000)
    # Validation limits.
    max_properties: int = Field(100, alias="INGEST_MAX_PROPERTIES", ge=1)
    max_string_length: int = Field(1024, alias="INGEST_MAX_STRING_LENGTH", ge=1)
    max_event_bytes: int = Field(32 * 1024, alias="INGEST_MAX_EVENT_BYTES", ge=1024)
    max_future_skew_s: int = Field(24 * 3600, alias="INGEST_MAX_FUTURE_SKEW_S", ge=0)
    max_event_age_days: int = Field(3650, alias="INGEST_MAX_EVENT_AGE_DAYS", ge=1)
    # host:port of the Segment-compatible HTTP tracking API (/v1/track, /v1/batch, ...);
    # empty or "0" turns it off. Workers share its port as they share the gRPC one.
    http_listen: str = Field("127.0.0.1:8088", alias="INGEST_HTTP_LISTEN")
    # Largest body of one call (/v1/track, ...) and of one /v1/batch, in bytes after
    # decompression; larger ones get 413 before they are parsed (Segment's 32 KB / 500 KB).
    http_max_call_bytes: int = Field(
        32 * 1024, alias="INGEST_HTTP_MAX_CALL_BYTES", ge=1024, le=1024 * 1024
    )
    http_max_batch_bytes: int = Field(
        500 * 1024, alias="INGEST_HTTP_MAX_BATCH_BYTES", ge=1024, le=16 * 1024 * 1024
    )
    # Most calls one /v1/batch may carry.
    http_max_batch_calls: int = Field(2500, alias="INGEST_HTTP_MAX_BATCH_CALLS", ge=1, le=10_000)
    # History imports: how often the appender looks for finished jobs (it also looks at
    # once when this process finishes one).
    history_poll_s: float = Field(2.0, alias="INGEST_HISTORY_POLL_S", gt=0, le=60)
    # Seal personal fields with a key per user (crypto-shredding erasure, README "Erasure").
    seal_personal: bool = Field(True, alias="INGEST_SEAL_PERSONAL")
    # Numeric event properties kept clear in the log (comma-separated): every app's RFM
    # amount property, so erasing one user never moves another's RFM scores.
    clear_properties: str = Field("revenue", alias="INGEST_CLEAR_PROPERTIES")
    # Cached user keys (per process) and how long a cached live key is used unchecked.
    key_cache_size: int = Field(100_000, alias="INGEST_KEY_CACHE_SIZE", ge=1)
    key_ttl_s: float = Field(30.0, alias="INGEST_KEY_TTL_S", ge=0)
    # Database connections of this process.
    db_pool_size: int = Field(4, alias="INGEST_DB_POOL_SIZE", ge=1)
    # Seconds to wait for a database connection (per attempt; 10 attempts before UNAVAILABLE).
    db_connect_timeout_s: int = Field(2, alias="INGEST_DB_CONNECT_TIMEOUT_S", ge=1)

    def clear_property_names(self) -> frozenset[str]:
        return frozenset(n.strip() for n in self.clear_properties.split(",") if n.strip())

    def http_address(self) -> tuple[str, int] | None:
        """(host, port) of the HTTP API, or None when it is off."""
        if self.http_listen.strip() in ("", "0"):
            return None
        host, _, port = self.http_listen.strip().rpartition(":")
        return host or "127.0.0.1", int(port)

    def limits(self) -> Limits:
        return Limits(
            max_properties=self.max_properties,
            max_string_length=self.max_string_length,
            max_event_bytes=self.max_event_bytes,
            max_future_skew_us=self.max_future_skew_s * 1_000_000,
            max_age_us=self.max_event_age_days * 86_400 * 1_000_000,
        )
