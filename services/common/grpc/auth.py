"""API-key authentication: `authorization: Bearer <key>`, each key bound to one app.

The interceptor resolves the app before any handler runs and exposes it via
`current_app_id()`; handlers never read an app id from the request body. A call
without a valid key is refused before its request is even read. grpc.aio
runs every call in an asyncio task of its own, so the context variable is per
call and stays readable by outer interceptors until the call ends.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any

import grpc

from services.common.grpc.errors import unauthenticated
from services.common.grpc.handlers import Behavior, HandlerInterceptor, refusal, wrap_handler

_APP_ID: ContextVar[str] = ContextVar("cohortflow_app_id")


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


class ApiKeyInterceptor(HandlerInterceptor):
    def __init__(self, keys: ApiKeys) -> None:
        self._keys = keys

    def intercept(
        self, method: str, handler: grpc.RpcMethodHandler, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        key = _bearer(details.invocation_metadata)
        app_id = self._keys.app_for(key) if key else None
        if app_id is None:
            reason = (
                "missing 'authorization: Bearer <key>' metadata"
                if key is None
                else "unknown API key"
            )
            return refusal(handler, unauthenticated(reason))

        def wrap(behavior: Behavior, streaming: bool) -> Behavior:
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
