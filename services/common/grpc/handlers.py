"""Wrapping gRPC method handlers: the shared shape of our interceptors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

PUBLIC_METHOD_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")

Behavior = Callable[..., Any]


_KEEP: Any = object()


def wrap_handler(
    handler: grpc.RpcMethodHandler,
    wrap: Callable[[Behavior, bool], Behavior],
    *,
    request_deserializer: Callable[[bytes], Any] | None = _KEEP,
) -> grpc.RpcMethodHandler:
    """A copy of `handler` whose behavior is `wrap(behavior, is_streaming_response)`
    (and whose request deserializer is `request_deserializer`, if given)."""
    options = {
        "request_deserializer": handler.request_deserializer
        if request_deserializer is _KEEP
        else request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(wrap(handler.unary_unary, False), **options)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(wrap(handler.unary_stream, True), **options)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(wrap(handler.stream_unary, False), **options)
    return grpc.stream_stream_rpc_method_handler(wrap(handler.stream_stream, True), **options)


def refusal(handler: grpc.RpcMethodHandler, status: grpc.Status) -> grpc.RpcMethodHandler:
    """A handler that answers `status` without reading (or parsing) the request.

    Declared request-streaming, so gRPC does not receive the request message before
    the handler runs: a refused caller's body stays in the transport's flow-control
    window (tens of KiB to a few MiB) instead of being read and parsed in full.
    """

    if handler.response_streaming:

        async def refuse_stream(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort_with_status(status)
            yield  # pragma: no cover

        return grpc.stream_stream_rpc_method_handler(
            refuse_stream, response_serializer=handler.response_serializer
        )

    async def refuse(requests: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort_with_status(status)

    return grpc.stream_unary_rpc_method_handler(
        refuse, response_serializer=handler.response_serializer
    )


class HandlerInterceptor(grpc.aio.ServerInterceptor):
    """An interceptor that rewrites the handler of each call not under `skipped` prefixes."""

    skipped: tuple[str, ...] = PUBLIC_METHOD_PREFIXES

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method or ""
        if handler is None or method.startswith(self.skipped):
            return handler
        return self.intercept(method, handler, handler_call_details)

    def intercept(
        self, method: str, handler: grpc.RpcMethodHandler, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        """The handler to run for `method` instead of `handler`."""
        raise NotImplementedError
