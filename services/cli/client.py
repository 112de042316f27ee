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

from services.common.grpc.errors import bad_request_of

T = TypeVar("T")

DEFAULT_INGEST = "127.0.0.1:50051"
DEFAULT_PROJECTOR = "127.0.0.1:50052"
DEFAULT_CAMPAIGN = "127.0.0.1:50053"
DEV_KEY_FILE = Path("var") / "dev-api-key"
_REPO = Path(__file__).resolve().parents[2]
# Errors worth a retry with the same event ids: the service or its database is away.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


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
    return grpc.aio.insecure_channel(address)


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
    service: str, address: str, rpc: Callable[[], Awaitable[T]], *, retries: int = 0
) -> T:
    """Await `rpc()`, retrying UNAVAILABLE / DEADLINE_EXCEEDED `retries` times with backoff.

    Only idempotent calls (client event ids) may be retried. Failures become CliError.
    """
    delay = 0.2
    for attempt in range(retries + 1):
        try:
            return await rpc()
        except grpc.RpcError as error:
            code = error.code()  # type: ignore[attr-defined]
            reachable = not _unreachable(error.details() or "")  # type: ignore[attr-defined]
            if code in RETRYABLE and reachable and attempt < retries:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            raise CliError(describe_rpc_error(error, service, address)) from None
    raise AssertionError("unreachable")


class Connection:
    """One channel to one service of a Target; calls through it fail as CliError.

    async with Connection(target, "projector") as conn:
        stub = ProfileServiceStub(conn.channel)
        reply = await conn.unary(stub.GetProfile, request)
    """

    def __init__(self, target: Target, service: str) -> None:
        self.target = target
        self.service = service
        self.address: str = getattr(target, service)
        self.channel = channel(self.address)

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
        retries: int = 0,
    ) -> T:
        """Call `method(request)` with the API key; retries only for idempotent requests."""
        metadata = self.target.metadata()
        return await call(
            self.service,
            self.address,
            lambda: method(request, metadata=metadata, timeout=deadline_s),
            retries=retries,
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
