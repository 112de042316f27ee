"""Settings shared by every service: read once from the environment in `__main__`.

Each service extends `ServiceSettings` with its own knobs; every knob has an
environment variable (documented in the README) and a sane default.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.eventlog.partitions import Deployment

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/cohortflow"
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    database_url: str = Field(DEFAULT_DATABASE_URL, alias="DATABASE_URL")
    nats_url: str = Field(DEFAULT_NATS_URL, alias="NATS_URL")
    log_level: str = Field("INFO", alias="LOG_LEVEL")
    # "json" for machines, "console" for people; "auto" picks console on a terminal.
    log_format: str = Field("auto", alias="LOG_FORMAT")
    # On SIGTERM: health turns NOT_SERVING at once, calls keep being served for
    # SHUTDOWN_DRAIN_S (so load balancers stop routing here), then new calls are
    # refused and in-flight ones get SHUTDOWN_GRACE_S to finish.
    shutdown_drain_s: float = Field(1.0, alias="SHUTDOWN_DRAIN_S", ge=0)
    shutdown_grace_s: float = Field(10.0, alias="SHUTDOWN_GRACE_S", ge=0)
    # Partitions of the log, fixed when the deployment is created (services.migrate records
    # it); unset: what the deployment records. And where each partition lives (JSON object
    # of partitions or ranges to database URLs; unset: all in DATABASE_URL).
    partitions: int | None = Field(None, alias="COHORTFLOW_PARTITIONS", ge=1, le=1024)
    placement: str = Field("", alias="COHORTFLOW_PLACEMENT")

    def deployment(self) -> Deployment:
        """The deployment recorded in the home database, checked against these settings."""
        from services.eventlog.deployment_store import load_deployment

        return load_deployment(self.database_url, self.partitions, self.placement)


class ApiKeySettings(BaseSettings):
    """API keys, each bound to one app: `app_id:key` pairs, comma separated, and/or a file
    with one `app_id key` pair per line (# comments allowed)."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    api_keys: str = Field("", alias="COHORTFLOW_API_KEYS")
    api_keys_file: Path | None = Field(None, alias="COHORTFLOW_API_KEYS_FILE")

    def pairs(self) -> list[tuple[str, str]]:
        """(app_id, key) pairs; raises ValueError naming a malformed entry."""
        out: list[tuple[str, str]] = []
        for n, entry in enumerate(filter(None, (e.strip() for e in self.api_keys.split(","))), 1):
            app_id, sep, key = entry.partition(":")
            if not sep or not app_id.strip() or not key.strip():
                msg = f"COHORTFLOW_API_KEYS entry {n} must look like app_id:key"
                raise ValueError(msg)
            out.append((app_id.strip(), key.strip()))
        if self.api_keys_file is not None:
            lines = self.api_keys_file.read_text().splitlines()
            for n, line in enumerate(lines, 1):
                text = line.split("#", 1)[0].strip()
                if not text:
                    continue
                fields = text.split()
                if len(fields) != 2:
                    msg = f"{self.api_keys_file}:{n}: expected 'app_id key', got {text!r}"
                    raise ValueError(msg)
                out.append((fields[0], fields[1]))
        return out
