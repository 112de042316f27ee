"""Campaign settings, read once from the environment."""

from __future__ import annotations

from pydantic import Field

from services.campaign.adapters.channels import PushSettings, SmsSettings, SmtpSettings
from services.campaign.adapters.rendering import RenderLimits
from services.campaign.domain.addresses import Network, parse_networks
from services.campaign.domain.model import Channel
from services.common.config import ServiceSettings


class CampaignSettings(ServiceSettings):
    # host:port the gRPC API (CampaignService, InboxService) listens on.
    listen: str = Field("127.0.0.1:50053", alias="CAMPAIGN_LISTEN")
    # Prometheus metrics endpoint (0 disables it).
    metrics_port: int = Field(9103, alias="CAMPAIGN_METRICS_PORT")
    metrics_host: str = Field("127.0.0.1", alias="CAMPAIGN_METRICS_HOST")
    # How often erased users' inbox messages and delivery payloads are looked for.
    erasure_poll_s: float = Field(2.0, alias="CAMPAIGN_ERASURE_POLL_S", gt=0)
    db_pool_size: int = Field(8, alias="CAMPAIGN_DB_POOL_SIZE", ge=2)
    # Largest request (bytes) the gRPC server reads; larger ones get RESOURCE_EXHAUSTED.
    max_receive_bytes: int = Field(
        4 * 1024 * 1024, alias="CAMPAIGN_MAX_RECEIVE_BYTES", ge=64 * 1024, le=64 * 1024 * 1024
    )
    # The durable JetStream consumer of the change stream (shared by replicas).
    consumer: str = Field("campaign", alias="CAMPAIGN_CONSUMER")
    fetch_batch: int = Field(256, alias="CAMPAIGN_FETCH_BATCH", ge=1, le=10_000)
    ack_wait_s: float = Field(30.0, alias="CAMPAIGN_ACK_WAIT_S", gt=0)
    # nak delay after a transient failure: base * 2^(deliveries-1), at most max.
    nak_base_s: float = Field(0.5, alias="CAMPAIGN_NAK_BASE_S", gt=0)
    nak_max_s: float = Field(30.0, alias="CAMPAIGN_NAK_MAX_S", gt=0)
    # Sending: batch per round, provider calls in flight, lease of a claimed send.
    dispatch_batch: int = Field(500, alias="CAMPAIGN_DISPATCH_BATCH", ge=1)
    dispatch_concurrency: int = Field(32, alias="CAMPAIGN_DISPATCH_CONCURRENCY", ge=1)
    dispatch_poll_s: float = Field(0.5, alias="CAMPAIGN_DISPATCH_POLL_S", gt=0)
    lease_s: float = Field(60.0, alias="CAMPAIGN_LEASE_S", gt=0)
    # Provider calls per send before it is dead-lettered; backoff between them.
    max_attempts: int = Field(5, alias="CAMPAIGN_MAX_ATTEMPTS", ge=1)
    retry_base_s: float = Field(1.0, alias="CAMPAIGN_RETRY_BASE_S", gt=0)
    retry_max_s: float = Field(300.0, alias="CAMPAIGN_RETRY_MAX_S", gt=0)
    http_timeout_s: float = Field(5.0, alias="CAMPAIGN_HTTP_TIMEOUT_S", gt=0)
    # Channels that need an explicit opt-in (others: only an explicit opt-out stops them).
    opt_in_channels: str = Field("email,sms,push", alias="CAMPAIGN_OPT_IN_CHANNELS")
    # Webhook signing: app_id:secret pairs, and a secret for apps not listed.
    webhook_secrets: str = Field("", alias="CAMPAIGN_WEBHOOK_SECRETS")
    webhook_secret: str = Field("", alias="CAMPAIGN_WEBHOOK_SECRET")
    smtp_host: str = Field("", alias="CAMPAIGN_SMTP_HOST")
    smtp_port: int = Field(25, alias="CAMPAIGN_SMTP_PORT")
    smtp_from: str = Field("cohortflow@localhost", alias="CAMPAIGN_SMTP_FROM")
    smtp_username: str = Field("", alias="CAMPAIGN_SMTP_USERNAME")
    smtp_password: str = Field("", alias="CAMPAIGN_SMTP_PASSWORD")
    smtp_starttls: bool = Field(False, alias="CAMPAIGN_SMTP_STARTTLS")
    push_base_url: str = Field("", alias="CAMPAIGN_PUSH_BASE_URL")
    push_project: str = Field("cohortflow", alias="CAMPAIGN_PUSH_PROJECT")
    push_token: str = Field("", alias="CAMPAIGN_PUSH_TOKEN")
    sms_base_url: str = Field("", alias="CAMPAIGN_SMS_BASE_URL")
    sms_account_sid: str = Field("", alias="CAMPAIGN_SMS_ACCOUNT_SID")
    sms_auth_token: str = Field("", alias="CAMPAIGN_SMS_AUTH_TOKEN")
    sms_from: str = Field("", alias="CAMPAIGN_SMS_FROM")
    # Following the event log for conversions.
    conversions_poll_s: float = Field(1.0, alias="CAMPAIGN_CONVERSIONS_POLL_S", gt=0)
    # Templates: render workers (processes), and the limits of one render.
    render_workers: int = Field(2, alias="CAMPAIGN_RENDER_WORKERS", ge=1, le=64)
    render_timeout_s: float = Field(1.0, alias="CAMPAIGN_RENDER_TIMEOUT_S", gt=0, le=60)
    render_max_chars: int = Field(100_000, alias="CAMPAIGN_RENDER_MAX_CHARS", ge=1000, le=10**7)
    render_memory_mb: int = Field(512, alias="CAMPAIGN_RENDER_MEMORY_MB", ge=128)
    render_trip_s: float = Field(300.0, alias="CAMPAIGN_RENDER_TRIP_S", ge=0)
    # Networks webhooks may reach although not public (e.g. 10.0.0.0/8, 127.0.0.1/32).
    webhook_allowed_networks: str = Field("", alias="CAMPAIGN_WEBHOOK_ALLOWED_NETWORKS")
    # The projector's gRPC address, asked whether a campaign's segment exists ("": not asked).
    segments_address: str = Field("127.0.0.1:50052", alias="CAMPAIGN_SEGMENTS_ADDRESS")
    # Broadcasts: how often to look for due runs; runs missed by more are skipped.
    broadcast_poll_s: float = Field(5.0, alias="CAMPAIGN_BROADCAST_POLL_S", gt=0)
    broadcast_misfire_s: float = Field(3600.0, alias="CAMPAIGN_BROADCAST_MISFIRE_S", gt=0)

    def webhook_networks(self) -> tuple[Network, ...]:
        try:
            return parse_networks(self.webhook_allowed_networks)
        except ValueError as error:
            msg = f"CAMPAIGN_WEBHOOK_ALLOWED_NETWORKS: {error}"
            raise ValueError(msg) from None

    def render_limits(self) -> RenderLimits:
        return RenderLimits(
            timeout_s=self.render_timeout_s,
            max_chars=self.render_max_chars,
            memory_mb=self.render_memory_mb,
            workers=self.render_workers,
            trip_s=self.render_trip_s,
        )

    def opt_in(self) -> frozenset[Channel]:
        names = {n.strip() for n in self.opt_in_channels.split(",") if n.strip()}
        return frozenset(Channel(n) for n in names)

    def secrets(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for n, entry in enumerate(
            filter(None, (e.strip() for e in self.webhook_secrets.split(",")))
        ):
            app_id, sep, secret = entry.partition(":")
            if not sep or not app_id or not secret:
                msg = f"CAMPAIGN_WEBHOOK_SECRETS entry {n + 1} must look like app_id:secret"
                raise ValueError(msg)
            out[app_id.strip()] = secret.strip()
        return out

    def smtp(self) -> SmtpSettings | None:
        if not self.smtp_host:
            return None
        return SmtpSettings(
            self.smtp_host,
            self.smtp_port,
            self.smtp_from,
            self.smtp_username,
            self.smtp_password,
            self.smtp_starttls,
            self.http_timeout_s,
        )

    def push(self) -> PushSettings | None:
        if not self.push_base_url:
            return None
        return PushSettings(self.push_base_url, self.push_project, self.push_token)

    def sms(self) -> SmsSettings | None:
        if not self.sms_base_url:
            return None
        return SmsSettings(
            self.sms_base_url, self.sms_account_sid, self.sms_auth_token, self.sms_from
        )
