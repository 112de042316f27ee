"""The change stream on NATS JetStream: its name, subjects and idempotent creation.

Subjects (with the default prefix "cohortflow.changes"):
    <prefix>.<app_id>.lifecycle              cohortflow.changes.v1.LifecycleChanged
    <prefix>.<app_id>.rfm                    cohortflow.changes.v1.RfmGroupChanged
    <prefix>.<app_id>.segment.<segment_id>   cohortflow.changes.v1.MembershipChanged
Headers: Nats-Msg-Id = change id (dedupe), Cohortflow-Type = full message name.
Tests use their own stream name and prefix so runs never share a stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import nats
import structlog
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

TYPE_HEADER = "Cohortflow-Type"
MSG_ID_HEADER = "Nats-Msg-Id"


class ChangeStreamSettings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    stream: str = Field("COHORTFLOW_CHANGES", alias="CHANGES_STREAM")
    subject_prefix: str = Field("cohortflow.changes", alias="CHANGES_SUBJECT_PREFIX")
    # Republished change ids within this window are dropped by JetStream.
    duplicate_window_s: float = Field(600.0, alias="CHANGES_DUPLICATE_WINDOW_S", gt=0)
    # How long changes are kept (0 = forever).
    max_age_days: float = Field(30.0, alias="CHANGES_MAX_AGE_DAYS", ge=0)
    # 1 on one server; 3 on a production cluster.
    replicas: int = Field(1, alias="CHANGES_REPLICAS", ge=1, le=5)


@dataclass(frozen=True)
class ChangeSubjects:
    prefix: str

    def lifecycle(self, app_id: str) -> str:
        return f"{self.prefix}.{app_id}.lifecycle"

    def rfm(self, app_id: str) -> str:
        return f"{self.prefix}.{app_id}.rfm"

    def segment(self, app_id: str, segment_id: str) -> str:
        return f"{self.prefix}.{app_id}.segment.{segment_id}"

    def app(self, app_id: str) -> str:
        """Every change of one app."""
        return f"{self.prefix}.{app_id}.>"

    @property
    def everything(self) -> str:
        return f"{self.prefix}.>"


def stream_config(settings: ChangeStreamSettings) -> StreamConfig:
    return StreamConfig(
        name=settings.stream,
        subjects=[f"{settings.subject_prefix}.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        duplicate_window=settings.duplicate_window_s,
        max_age=settings.max_age_days * 86_400 if settings.max_age_days else None,
        num_replicas=settings.replicas,
    )


async def ensure_change_stream(js: JetStreamContext, settings: ChangeStreamSettings) -> None:
    """Create the stream, or bring an existing one to this configuration. Idempotent."""
    config = stream_config(settings)
    try:
        await js.add_stream(config)
    except BadRequestError:
        # Exists with another configuration (e.g. older settings): update it.
        await js.update_stream(config)


async def connect(url: str, name: str) -> nats.NATS:
    """A NATS connection that keeps reconnecting forever (outages are waited out),
    reporting trouble as log lines rather than tracebacks."""
    log = structlog.get_logger("nats").bind(connection=name)

    async def on_error(error: Exception) -> None:
        log.warning("nats error", error=str(error) or type(error).__name__)

    async def on_disconnected() -> None:
        log.warning("nats disconnected")

    async def on_reconnected() -> None:
        log.info("nats reconnected")

    return await nats.connect(
        url,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        allow_reconnect=True,
        error_cb=on_error,
        disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected,
    )
