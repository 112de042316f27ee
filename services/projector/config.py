"""Projector settings, read once from the environment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.common.config import ServiceSettings
from services.projector.adapters.query_guard import BUILD_STATEMENT_TIMEOUT_S, QUERY_TIMEOUT_S
from services.projector.domain.policy import AppPolicy, LifecyclePolicy, RfmPolicy


class _LifecycleOverrides(BaseModel):
    model_config = ConfigDict(extra="forbid")
    new_days: float | None = None
    dormant_days: float | None = None
    churn_days: float | None = None
    adaptive: bool | None = None
    adaptive_min_gaps: int | None = None
    adaptive_recent_gaps: int | None = None
    adaptive_factor: float | None = None
    churn_factor: float | None = None
    reactivated_days: float | None = None
    loyal_window_days: int | None = None
    loyal_min_active_days: int | None = None
    late_limit_days: float | None = None
    churn_events: list[str] | None = None


class _RfmOverrides(BaseModel):
    model_config = ConfigDict(extra="forbid")
    purchase_event: str | None = None
    amount_property: str | None = None
    window_days: int | None = None
    recompute_minutes: int | None = None


class _AppOverrides(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lifecycle: _LifecycleOverrides = Field(default_factory=_LifecycleOverrides)
    rfm: _RfmOverrides = Field(default_factory=_RfmOverrides)

    def apply(self, base: AppPolicy) -> AppPolicy:
        life = {k: v for k, v in self.lifecycle.model_dump().items() if v is not None}
        if "churn_events" in life:
            life["churn_events"] = frozenset(life["churn_events"])
        rfm = {k: v for k, v in self.rfm.model_dump().items() if v is not None}
        return AppPolicy(
            lifecycle=LifecyclePolicy(**{**base.lifecycle.__dict__, **life}),
            rfm=RfmPolicy(**{**base.rfm.__dict__, **rfm}),
        )


class Policies:
    """Per-app policies: defaults, overridden by "*" and then by the app's own entry."""

    def __init__(self, overrides: dict[str, Any] | None = None) -> None:
        parsed = {app: _AppOverrides.model_validate(v) for app, v in (overrides or {}).items()}
        base = AppPolicy()
        if "*" in parsed:
            base = parsed.pop("*").apply(base)
        self._default = base
        self._apps = {app: o.apply(base) for app, o in parsed.items()}

    def __call__(self, app_id: str) -> AppPolicy:
        return self._apps.get(app_id, self._default)


class ProjectorSettings(ServiceSettings):
    listen: str = Field("127.0.0.1:50052", alias="PROJECTOR_LISTEN")
    metrics_port: int = Field(9102, alias="PROJECTOR_METRICS_PORT")
    metrics_host: str = Field("127.0.0.1", alias="PROJECTOR_METRICS_HOST")
    # Log events folded per transaction.
    batch_size: int = Field(2000, alias="PROJECTOR_BATCH_SIZE", ge=1, le=20_000)
    # Longest wait for a NOTIFY before polling the log anyway (the lost-NOTIFY watchdog).
    watchdog_s: float = Field(1.0, alias="PROJECTOR_WATCHDOG_S", gt=0)
    # The recorded clock: one ClockTicked per interval (0 disables this process's ticker).
    tick_interval_s: float = Field(60.0, alias="PROJECTOR_TICK_INTERVAL_S", ge=0)
    # Per-app lifecycle/RFM thresholds as JSON, or a JSON file: {"*": {...}, "app": {...}}.
    policies: str = Field("", alias="PROJECTOR_POLICIES")
    policies_file: Path | None = Field(None, alias="PROJECTOR_POLICIES_FILE")
    # Outbox relay: rows per round and acknowledgement timeout.
    relay_batch: int = Field(1000, alias="PROJECTOR_RELAY_BATCH", ge=1, le=10_000)
    relay_ack_timeout_s: float = Field(5.0, alias="PROJECTOR_RELAY_ACK_TIMEOUT_S", gt=0)
    # Longest a query waits for the projector to reach a requested min_position.
    read_wait_s: float = Field(10.0, alias="PROJECTOR_READ_WAIT_S", ge=0)
    # Largest request (bytes) the gRPC server reads; larger ones get RESOURCE_EXHAUSTED.
    max_receive_bytes: int = Field(
        4 * 1024 * 1024, alias="PROJECTOR_MAX_RECEIVE_BYTES", ge=64 * 1024, le=64 * 1024 * 1024
    )
    db_pool_size: int = Field(6, alias="PROJECTOR_DB_POOL_SIZE", ge=2)
    # Longest a preview or time-travel query runs (PostgreSQL statement_timeout).
    query_timeout_s: float = Field(QUERY_TIMEOUT_S, alias="PROJECTOR_QUERY_TIMEOUT_S", gt=0)
    # Longest one statement of a background segment build runs; past it the build fails.
    build_statement_timeout_s: float = Field(
        BUILD_STATEMENT_TIMEOUT_S, alias="PROJECTOR_BUILD_STATEMENT_TIMEOUT_S", gt=0
    )
    # How often the analytics rollups look for new changes to fold (AnalyticsService).
    rollup_poll_s: float = Field(1.0, alias="PROJECTOR_ROLLUP_POLL_S", gt=0)

    def load_policies(self) -> Policies:
        """Raises ValueError naming what is wrong with the policy configuration."""
        raw: dict[str, Any] = {}
        if self.policies_file is not None:
            raw.update(json.loads(self.policies_file.read_text()))
        if self.policies:
            raw.update(json.loads(self.policies))
        return Policies(raw)
