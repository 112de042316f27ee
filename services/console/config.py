"""Console settings, read once from the environment."""

from __future__ import annotations

from pydantic import Field

from services.common.config import ServiceSettings


class ConsoleSettings(ServiceSettings):
    listen: str = Field("127.0.0.1:8080", alias="CONSOLE_LISTEN")
    # Prometheus metrics (0: none).
    metrics_port: int = Field(9104, alias="CONSOLE_METRICS_PORT", ge=0, le=65535)
    metrics_host: str = Field("127.0.0.1", alias="CONSOLE_METRICS_HOST")
    # Where the projector (ProfileService, SegmentService, AnalyticsService) and the
    # campaign service (CampaignService, InboxService) listen.
    projector: str = Field("127.0.0.1:50052", alias="CONSOLE_PROJECTOR_ADDRESS")
    campaign: str = Field("127.0.0.1:50053", alias="CONSOLE_CAMPAIGN_ADDRESS")
    # Sign-in sessions last this long.
    session_hours: float = Field(12.0, alias="CONSOLE_SESSION_HOURS", gt=0, le=24 * 30)
    # Send the session cookie only over HTTPS. Browsers treat http://127.0.0.1 and
    # http://localhost as secure, so this stays on in development too.
    cookie_secure: bool = Field(True, alias="CONSOLE_COOKIE_SECURE")
    # Seconds one gRPC call of a page may take.
    rpc_timeout_s: float = Field(30.0, alias="CONSOLE_RPC_TIMEOUT_S", gt=0)
    db_pool_size: int = Field(4, alias="CONSOLE_DB_POOL_SIZE", ge=1)

    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]") or "127.0.0.1", int(port)
