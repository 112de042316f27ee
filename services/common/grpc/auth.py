"""API-key authentication: `authorization: Bearer <key>`, each key bound to one app.

The interceptor resolves the app before any handler runs and exposes it via
`current_app_id()`; handlers never read an app id from the request body. grpc.aio
runs every call in an asyncio task of its own, so the context variable is per
call and stays readable by outer interceptors until the call ends.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from typing import Any

import grpc

from services.common.grpc.errors import unauthenticated

_APP_ID: ContextVar[str] = ContextVar("cohortflow_app_id")
PUBLIC_METHOD_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")


def current_app_id() -> str:
    """The app bound to the calling API key (only inside an authenticated handler)."""
    return _APP_ID.get()


class ApiKeys:
    """Key -> app lookup. Keys are kept only as SHA-256 digests."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._apps: dict[bytes, str] = {}
        for app_id, key in pairs:
            self._apps[self._digest(key)] = app_id

    @staticmethod
    def _digest(key: str) -> bytes:
        return hashlib.sha256(key.encode()).digest()

    def app_for(self, key: str) -> str | None:
        digest = self._digest(key)
        for known, app_id in self._apps.items():
            if hmac.compare_digest(known, digest):
                return app_id
        return None

    def __len__(self) -> int:
        return len(self._apps)


def _bearer(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else str(value)
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


Behavior = Callable[..., Any]


def wrap_handler(
    handler: grpc.RpcMethodHandler, wrap: Callable[[Behavior, bool], Behavior]
) -> grpc.RpcMethodHandler:
    """A copy of `handler` whose behavior is `wrap(behavior, is_streaming_response)`."""
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            wrap(handler.unary_unary, False),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            wrap(handler.unary_stream, True),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            wrap(handler.stream_unary, False),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return grpc.stream_stream_rpc_method_handler(
        wrap(handler.stream_stream, True),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, keys: ApiKeys) -> None:
        self._keys = keys

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method or ""
        if handler is None or method.startswith(PUBLIC_METHOD_PREFIXES):
            return handler
        key = _bearer(handler_call_details.invocation_metadata)
        app_id = self._keys.app_for(key) if key else None

        def wrap(behavior: Behavior, streaming: bool) -> Behavior:
            async def deny(request: Any, context: grpc.aio.ServicerContext) -> Any:
                reason = (
                    "missing 'authorization: Bearer <key>' metadata"
                    if key is None
                    else ("unknown API key")
                )
                await context.abort_with_status(unauthenticated(reason))

            if app_id is None:
                if streaming:

                    async def deny_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
                        await deny(request, context)
                        yield  # pragma: no cover

                    return deny_stream
                return deny

            if streaming:

                async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
                    _APP_ID.set(app_id)
                    async for item in behavior(request, context):
                        yield item

                return stream

            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                _APP_ID.set(app_id)
                return await behavior(request, context)

            return unary

        return wrap_handler(handler, wrap)
