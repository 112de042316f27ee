"""Provider channels: webhook, push (FCM HTTP v1 style), SMS (Twilio style), email (SMTP).

Every call carries the send id as its idempotency key (`Idempotency-Key`, and
the provider's own header where it has one). Timeouts, connection errors, 408,
429 and 5xx are retryable; other refusals are final. Base URLs are settings, so
tests (and staging) point them at local servers.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import re
import smtplib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from urllib.parse import urlsplit

import httpx
import orjson

from services.campaign.domain.addresses import Network, address_allowed, literal_address
from services.campaign.domain.ports import Outgoing, SendResult

IDEMPOTENCY_HEADER = "Idempotency-Key"
SIGNATURE_HEADER = "X-Cohortflow-Signature"
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None


async def _post(client: httpx.AsyncClient, url: str, **kwargs: object) -> tuple[SendResult, dict]:
    try:
        response = await client.post(url, **kwargs)  # type: ignore[arg-type]
    except httpx.HTTPError as error:  # timeouts and connection errors
        return SendResult(ok=False, retryable=True, error=f"{type(error).__name__}: {error}"), {}
    if response.is_success:
        try:
            body = response.json()
        except ValueError:
            body = {}
        return SendResult(ok=True), body if isinstance(body, dict) else {}
    return (
        SendResult(
            ok=False,
            retryable=response.status_code in RETRYABLE_STATUS,
            error=f"HTTP {response.status_code}: {response.text[:200]}",
            retry_after_s=_retry_after(response),
        ),
        {},
    )


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


async def _refused_address(url: str, allowed: Sequence[Network]) -> str:
    """Why the webhook's host must not be called ("" if it may): the name is resolved
    now, and every address it has must be public or allowed."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    literal = literal_address(host)
    if literal is not None:
        found = [literal]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, parts.port or (443 if parts.scheme == "https" else 80)
            )
        except OSError:
            return ""  # the call itself will fail and be retried
        found = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    refused = [a for a in found if not address_allowed(a, allowed)]
    return f"{host} is {refused[0]}, not a public address" if refused else ""


class WebhookSender:
    """POSTs the message as JSON to the campaign's URL, signed with the app's secret.
    Hosts that are (or resolve to) non-public addresses are refused unless `allowed`."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        secrets: Mapping[str, str],
        default: str = "",
        allowed: Sequence[Network] = (),
    ):
        self._client = client
        self._secrets = secrets
        self._default = default
        self._allowed = tuple(allowed)

    async def send(self, message: Outgoing) -> SendResult:
        refused = await _refused_address(message.address, self._allowed)
        if refused:
            return SendResult(ok=False, error=refused, reason="webhook_address_refused")
        body = orjson.dumps(
            {
                "send_id": message.send_id,
                "app_id": message.app_id,
                "campaign_id": message.campaign_id,
                "variant": message.variant,
                "user_id": message.user_id,
                "change_id": message.change_id,
                "title": message.title,
                "body": message.body,
                "data": message.data,
            }
        )
        headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: message.send_id}
        secret = self._secrets.get(message.app_id, self._default)
        if secret:
            headers[SIGNATURE_HEADER] = signature(secret, str(int(time.time())), body)
        result, _ = await _post(self._client, message.address, content=body, headers=headers)
        return result


@dataclass(frozen=True)
class PushSettings:
    base_url: str
    project: str
    token: str


class PushSender:
    """FCM HTTP v1 style: POST {base}/v1/projects/{project}/messages:send."""

    def __init__(self, client: httpx.AsyncClient, settings: PushSettings) -> None:
        self._client = client
        self._url = f"{settings.base_url.rstrip('/')}/v1/projects/{settings.project}/messages:send"
        self._token = settings.token

    async def send(self, message: Outgoing) -> SendResult:
        payload = {
            "message": {
                "token": message.address,
                "notification": {"title": message.title, "body": message.body},
                "data": {**message.data, "send_id": message.send_id},
            }
        }
        result, body = await _post(
            self._client,
            self._url,
            json=payload,
            headers={
                "Authorization": f"Bearer {self._token}",
                IDEMPOTENCY_HEADER: message.send_id,
            },
        )
        if result.ok:
            return SendResult(ok=True, provider_id=str(body.get("name", "")))
        return result


@dataclass(frozen=True)
class SmsSettings:
    base_url: str
    account_sid: str
    auth_token: str
    sender: str


class SmsSender:
    """Twilio style: POST {base}/2010-04-01/Accounts/{sid}/Messages.json (form encoded)."""

    def __init__(self, client: httpx.AsyncClient, settings: SmsSettings) -> None:
        self._client = client
        self._settings = settings
        self._url = (
            f"{settings.base_url.rstrip('/')}/2010-04-01/Accounts/"
            f"{settings.account_sid}/Messages.json"
        )

    async def send(self, message: Outgoing) -> SendResult:
        result, body = await _post(
            self._client,
            self._url,
            data={"To": message.address, "From": self._settings.sender, "Body": message.body},
            auth=(self._settings.account_sid, self._settings.auth_token),
            headers={
                IDEMPOTENCY_HEADER: message.send_id,
                "I-Twilio-Idempotency-Token": message.send_id,
            },
        )
        if result.ok:
            return SendResult(ok=True, provider_id=str(body.get("sid", "")))
        return result


_CONTROLS = re.compile(r"[\x00-\x1f\x7f]")


def _one_line(value: str) -> str:
    """A header value: line breaks and other controls (from a trait, say) become spaces,
    so no rendered text can add a header."""
    return _CONTROLS.sub(" ", value)


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    username: str = ""
    password: str = ""
    starttls: bool = False
    timeout_s: float = 10.0


class EmailSender:
    """Plain-text email over SMTP; Message-ID and X-Idempotency-Key carry the send id,
    so mail systems that dedupe on Message-ID see a retried send once."""

    def __init__(self, settings: SmtpSettings) -> None:
        self._settings = settings

    def _send_sync(self, message: Outgoing) -> SendResult:
        settings = self._settings
        email = EmailMessage()
        email["From"] = _one_line(message.sender or settings.sender)
        email["To"] = _one_line(message.address)
        email["Subject"] = _one_line(message.title)
        email["Date"] = formatdate(usegmt=True)
        email["Message-ID"] = f"<{message.send_id}@cohortflow>"
        email["X-Idempotency-Key"] = message.send_id
        email.set_content(message.body)
        try:
            with smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout_s) as smtp:
                if settings.starttls:
                    smtp.starttls()
                if settings.username:
                    smtp.login(settings.username, settings.password)
                smtp.send_message(email)
        except smtplib.SMTPResponseException as error:
            return SendResult(
                ok=False, retryable=400 <= error.smtp_code < 500, error=f"SMTP {error.smtp_code}"
            )
        except smtplib.SMTPRecipientsRefused as error:
            return SendResult(ok=False, retryable=False, error=f"recipient refused: {error}")
        except (smtplib.SMTPException, OSError) as error:
            return SendResult(ok=False, retryable=True, error=f"{type(error).__name__}: {error}")
        return SendResult(ok=True, provider_id=email["Message-ID"])

    async def send(self, message: Outgoing) -> SendResult:
        return await asyncio.to_thread(self._send_sync, message)
