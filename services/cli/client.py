"""How the CLI reaches the services: addresses, the API key, channels, readable errors.

Commands build a `Target` once (from the global options) and turn every gRPC failure
into a `CliError` whose message is one line: the service, the status code, the
message, and each BadRequest field violation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc

from services.cli.retries import RETRY_DEADLINE_S, is_transient, retrying
from services.common.grpc.errors import bad_request_of

T = TypeVar("T")

DEFAULT_INGEST = "127.0.0.1:50051"
DEFAULT_PROJECTOR = "127.0.0.1:50052"
DEFAULT_CAMPAIGN = "127.0.0.1:50053"
DEV_KEY_FILE = Path("var") / "dev-api-key"
_REPO = Path(__file__).resolve().parents[2]
# Reconnect quickly after a service restart (gRPC's own backoff grows to 120 s).
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
)


class CliError(Exception):
    """A failure to report as one line on stderr (exit code 1)."""


@dataclass(frozen=True)
class Target:
    """Where the services listen and the API key to send them."""

    ingest: str = DEFAULT_INGEST
    projector: str = DEFAULT_PROJECTOR
    campaign: str = DEFAULT_CAMPAIGN
    key: str | None = None

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.required_key()}"),)

    def required_key(self) -> str:
        if not self.key:
            msg = (
                "no API key: pass --key, set COHORTFLOW_API_KEY, or run `make run`"
                f" in the repo (it writes {DEV_KEY_FILE})"
            )
            raise CliError(msg)
        return self.key


def find_dev_key(cwd: Path | None = None) -> str | None:
    """The development key `make run` keeps, from ./var or the repo's var/, if any."""
    for base in (cwd or Path.cwd(), _REPO):
        path = base / DEV_KEY_FILE
        if path.is_file():
            key = path.read_text().strip()
            if key:
                return key
    return None


def channel(address: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)


def describe_rpc_error(error: grpc.RpcError, service: str, address: str) -> str:
    """One line for a failed call: who, which code, why, and each bad field."""
    code = error.code()  # type: ignore[attr-defined]
    details = error.details() or ""  # type: ignore[attr-defined]
    if code == grpc.StatusCode.UNAVAILABLE and _unreachable(details):
        return (
            f"cannot reach {service} at {address} ({_reason(details)});"
            " is the suite running? `make run` starts it"
        )
    violations = bad_request_of(error)
    listed = "; ".join(f"{field}: {why}" for field, why in violations)
    if violations and details.startswith(f"{violations[0][0]}: "):
        # the message only summarises the violations: show them all instead
        return f"{service} at {address} answered {code.name}: {listed}"
    line = f"{service} at {address} answered {code.name}: {details}"
    return f"{line} ({listed})" if violations else line


def _unreachable(details: str) -> bool:
    lowered = details.lower()
    return any(
        hint in lowered
        for hint in ("failed to connect", "connection refused", "errors resolving", "dns")
    )


def _reason(details: str) -> str:
    lowered = details.lower()
    if "connection refused" in lowered:
        return "connection refused"
    if "resolving" in lowered or "dns" in lowered:
        return "the host name does not resolve"
    return "no connection"


async def call(
    service: str,
    address: str,
    rpc: Callable[[], Awaitable[T]],
    *,
    idempotent: bool = False,
    retry_s: float = RETRY_DEADLINE_S,
    reached: Callable[[], bool] = lambda: False,
) -> T:
    """Await `rpc()`; failures become CliError.

    An idempotent call (its request carries client ids: event ids, request ids) is
    retried on transient failures (services.cli.retries) for up to `retry_s` seconds,
    sent again as it was. A service that cannot be reached is reported at once unless
    `reached()` says it has answered this client before: one that was never up is
    not running (the message says how to start it); one that answered and went away
    is restarting, and is waited for.
    """

    def retryable(error: BaseException) -> bool:
        if not is_transient(error):
            return False
        details = error.details() or ""  # type: ignore[attr-defined]
        return reached() or not _unreachable(details)

    try:
        if not idempotent:
            return await rpc()
        return await retrying(rpc, deadline_s=retry_s, retryable=retryable)
    except grpc.RpcError as error:
        raise CliError(describe_rpc_error(error, service, address)) from None


class Connection:
    """One channel to one service of a Target; calls through it fail as CliError.

    async with Connection(target, "projector") as conn:
        stub = ProfileServiceStub(conn.channel)
        reply = await conn.unary(stub.GetProfile, request)
    """

    def __init__(self, target: Target, service: str, *, retry_s: float = RETRY_DEADLINE_S) -> None:
        self.target = target
        self.service = service
        self.address: str = getattr(target, service)
        self.channel = channel(self.address)
        self.retry_s = retry_s
        self.reached = False  # the service has answered a call of this connection

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.channel.close()

    async def unary(
        self,
        method: Callable[..., Awaitable[T]],
        request: object,
        *,
        deadline_s: float = 30.0,
        idempotent: bool = False,
        retries: int = 0,
    ) -> T:
        """Call `method(request)` with the API key; `deadline_s` bounds each attempt.

        `idempotent=True` (only for requests that carry their own ids) retries transient
        failures for up to the connection's `retry_s`; `retries=N` (N > 0) is the older
        spelling of the same and no longer counts attempts: the deadline bounds them.
        """
        metadata = self.target.metadata()

        async def attempt() -> T:
            try:
                reply = await method(request, metadata=metadata, timeout=deadline_s)
            except grpc.RpcError as error:
                if not _unreachable(error.details() or ""):  # type: ignore[attr-defined]
                    self.reached = True
                raise
            self.reached = True
            return reply

        return await call(
            self.service,
            self.address,
            attempt,
            idempotent=idempotent or retries > 0,
            retry_s=self.retry_s,
            reached=lambda: self.reached,
        )


def ask(
    target: Target,
    service: str,
    stub_class: Callable[[grpc.aio.Channel], Any],
    method: str,
    request: object,
    **options: Any,
) -> Any:
    """One unary call, start to end, for a one-shot command; failures raise CliError.

    reply = ask(target, "projector", ProfileServiceStub, "GetProfile", request)
    """

    async def once() -> Any:
        async with Connection(target, service) as conn:
            return await conn.unary(getattr(stub_class(conn.channel), method), request, **options)

    return asyncio.run(once())


def target_of(ctx: object) -> Target:
    """The Target the global options built (a typer/click context's `obj`)."""
    found = getattr(ctx, "obj", None)
    return found if isinstance(found, Target) else Target(key=find_dev_key())


def first_failure(group: BaseExceptionGroup) -> BaseException:
    """The first CliError in a group (one line to show), else the first failure."""
    flat: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        current = pending.pop(0)
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        else:
            flat.append(current)
    return next((e for e in flat if isinstance(e, CliError)), flat[0])
