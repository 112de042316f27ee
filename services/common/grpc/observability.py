"""One log line and metrics for every call: method, app, status code, duration."""

from __future__ import annotations

import time
from typing import Any

import grpc
import structlog
from prometheus_client import Counter, Histogram

from services.common.grpc.auth import current_app_id
from services.common.grpc.handlers import Behavior, HandlerInterceptor, wrap_handler

CALLS = Counter("cohortflow_grpc_calls_total", "gRPC calls handled", ["method", "code"])
CALL_SECONDS = Histogram(
    "cohortflow_grpc_call_seconds",
    "gRPC call duration",
    ["method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
_log = structlog.get_logger("grpc")


def _code_name(context: grpc.aio.ServicerContext, error: BaseException | None) -> str:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int):
        for candidate in grpc.StatusCode:
            if candidate.value[0] == code:
                return candidate.name
    if error is not None and not isinstance(error, grpc.aio.AbortError):
        return "UNKNOWN"
    return "OK"


class ObservabilityInterceptor(HandlerInterceptor):
    """Outermost interceptor: sees every call, including those auth refuses."""

    def __init__(self, quiet_prefixes: tuple[str, ...] = ("/grpc.health.v1.",)) -> None:
        self.skipped = quiet_prefixes

    def intercept(
        self, method: str, handler: grpc.RpcMethodHandler, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        short = method.rsplit("/", 1)[-1]

        def finish(context: grpc.aio.ServicerContext, start: float, error: BaseException | None):
            elapsed = time.perf_counter() - start
            code = _code_name(context, error)
            CALLS.labels(short, code).inc()
            CALL_SECONDS.labels(short).observe(elapsed)
            try:
                app_id = current_app_id()
            except LookupError:
                app_id = ""
            fields: dict[str, Any] = {"method": method, "code": code, "ms": round(elapsed * 1e3, 2)}
            if app_id:
                fields["app_id"] = app_id
            if code in ("OK", "CANCELLED"):
                _log.debug("rpc", **fields)
            elif code in ("INTERNAL", "UNKNOWN", "DATA_LOSS"):
                _log.error("rpc", error=repr(error), **fields)
            else:
                _log.info("rpc", details=context.details() or "", **fields)

        def wrap(behavior: Behavior, streaming: bool) -> Behavior:
            if streaming:

                async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
                    start, error = time.perf_counter(), None
                    try:
                        async for item in behavior(request, context):
                            yield item
                    except BaseException as exc:
                        error = exc
                        raise
                    finally:
                        finish(context, start, error)

                return stream

            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                start, error = time.perf_counter(), None
                try:
                    return await behavior(request, context)
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    finish(context, start, error)

            return unary

        return wrap_handler(handler, wrap)
