"""History queries run for a gRPC call: bounded by its deadline, stopped when it goes.

The query runs in a worker thread. If the call is cancelled (by its client, or because
its deadline passed) the handler is cancelled, and the query is cancelled in PostgreSQL
too instead of running on for nobody. A query that runs out of time answers
DEADLINE_EXCEEDED (the caller's deadline was the nearer limit) or RESOURCE_EXHAUSTED
(PROJECTOR_QUERY_TIMEOUT_S was), never INTERNAL.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from services.common.grpc.errors import abort, deadline_exceeded, resource_exhausted
from services.projector.adapters.query_guard import QueryHandle, QueryTimeout, QueryTooExpensive

T = TypeVar("T")


async def run_query(
    context: grpc.aio.ServicerContext,
    configured_s: float,
    query: Callable[..., T],
    *args: Any,
) -> T:
    """`query(*args, timeout_s=..., handle=...)` in a thread, on behalf of the call."""
    remaining = context.time_remaining()
    handle = QueryHandle()
    call = functools.partial(query, *args, timeout_s=remaining, handle=handle)
    try:
        return await asyncio.to_thread(call)
    except asyncio.CancelledError:
        threading.Thread(target=handle.cancel, name="cancel-query", daemon=True).start()
        raise
    except QueryTimeout as error:
        if remaining is not None and remaining < configured_s:
            await abort(
                context,
                deadline_exceeded(
                    f"the query did not finish within the call's deadline ({remaining:.3g} s)"
                ),
            )
        await abort(
            context,
            resource_exhausted(
                f"the query ran longer than {error.timeout_s:g} s (PROJECTOR_QUERY_TIMEOUT_S)"
                " and was stopped; narrow the definition (fewer or narrower event conditions,"
                " shorter windows)",
                "QUERY_TIMEOUT",
            ),
        )
    except QueryTooExpensive as error:
        await abort(
            context,
            resource_exhausted(f"PostgreSQL refused the query: {error}", "QUERY_TOO_EXPENSIVE"),
        )
