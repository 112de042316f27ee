"""Retrying idempotent calls: which failures are transient, and for how long to keep trying.

Every call the shipped clients repeat (the CLI's `track` and `identify`, the simulator,
the import) carries its own idempotency keys: the client's event ids. A call whose
outcome is unknown (the service restarted mid-call, its database was away) is sent
again exactly as it was; ingest stores each (app, event_id) once and answers a repeat
`DUPLICATE` with the original position. So retrying never stores anything twice.

- Transient, retried: `UNAVAILABLE` (a service restarting, its database or NATS away,
  a connection lost mid-call), `DEADLINE_EXCEEDED` (one attempt's own deadline), and
  `RESOURCE_EXHAUSTED` only when the status carries a `google.rpc.RetryInfo` (the
  server asks to come back later; its delay is honoured).
- Final at once: every other code (`INVALID_ARGUMENT`, `UNAUTHENTICATED`,
  `NOT_FOUND`, ...) and `RESOURCE_EXHAUSTED` without `RetryInfo` (a message over a size
  limit does not get smaller by waiting).
- Backoff: exponential with full jitter, from `FIRST_WAIT_S` doubling to at most
  `MAX_WAIT_S`, until `RETRY_DEADLINE_S` after the first attempt; then the last error
  is raised.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_before_delay
from tenacity.wait import wait_random_exponential

T = TypeVar("T")

RETRY_DEADLINE_S = 120.0
FIRST_WAIT_S = 0.1
MAX_WAIT_S = 5.0
TRANSIENT_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


def retry_delay_of(error: grpc.RpcError) -> float | None:
    """The delay a `google.rpc.RetryInfo` in the error's status asks for, if it has one."""
    try:
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
    except ValueError:  # a status whose details disagree with its code
        return None
    found = [
        d
        for d in (status.details if status else ())
        if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)
    ]
    if not found:
        return None
    info = error_details_pb2.RetryInfo()
    found[0].Unpack(info)
    return info.retry_delay.ToTimedelta().total_seconds()


def is_transient(error: BaseException) -> bool:
    """Whether an idempotent call that failed with `error` may be sent again as it was."""
    if not isinstance(error, grpc.RpcError):
        return False
    code = error.code()  # type: ignore[attr-defined]
    if code in TRANSIENT_CODES:
        return True
    return code == grpc.StatusCode.RESOURCE_EXHAUSTED and retry_delay_of(error) is not None


class _Wait:
    """Full-jitter exponential backoff, never shorter than a RetryInfo's delay."""

    def __init__(self) -> None:
        self._jitter = wait_random_exponential(multiplier=FIRST_WAIT_S, max=MAX_WAIT_S)

    def __call__(self, state: RetryCallState) -> float:
        wait = float(self._jitter(state))
        error = state.outcome.exception() if state.outcome else None
        hinted = retry_delay_of(error) if isinstance(error, grpc.RpcError) else None
        return max(wait, hinted or 0.0)


async def retrying(
    attempt: Callable[[], Awaitable[T]],
    *,
    deadline_s: float = RETRY_DEADLINE_S,
    retryable: Callable[[BaseException], bool] = is_transient,
) -> T:
    """Await `attempt()` until it succeeds, fails for good, or `deadline_s` has passed
    since the first try (no wait starts that would end past it); re-raises the last error.

    Only for idempotent calls: the request must carry its own idempotency keys.
    """
    policy = AsyncRetrying(
        stop=stop_before_delay(deadline_s),
        wait=_Wait(),
        retry=retry_if_exception(retryable),
        reraise=True,
    )
    return await policy(attempt)
