"""The innermost interceptor: bad bytes and bad requests never reach a handler, and a
handler's bug never reaches a client as its exception text.

- Request bytes that do not parse (truncated, wrong wire types, invalid UTF-8, nested
  deeper than protobuf's limit of 100) are answered INVALID_ARGUMENT (`MALFORMED_REQUEST`)
  instead of gRPC's UNKNOWN with the parser's message.
- Parsed requests pass `request_problems` (text rule, timestamp and duration ranges)
  unless their service judges every field itself (`Registration.checked=False`: ingest,
  whose batches answer each event on its own).
- A refusal of the service layer (`services.common.domain_errors`) escaping a handler is
  answered with its status (`errors.status_of`, the one table). Any other exception is
  logged with its traceback under an error id and answered INTERNAL with that id only
  (a database that cannot be reached is UNAVAILABLE, a query cancelled by its statement
  timeout DEADLINE_EXCEEDED).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from typing import Any

import grpc
import structlog

from services.common.domain_errors import Refused
from services.common.grpc.errors import invalid_argument, malformed_request, status_of
from services.common.grpc.handlers import Behavior, HandlerInterceptor, wrap_handler
from services.common.grpc.request_check import request_problems

_log = structlog.get_logger("grpc")


class _Malformed:
    """What the lenient deserializer returns for bytes that are not a request."""

    __slots__ = ()


MALFORMED = _Malformed()


def _lenient(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:  # DecodeError, RecursionError, ...: all mean "not a request"
            return MALFORMED

    return parse


def _type_name(deserializer: Callable[[bytes], Any] | None) -> str:
    owner = getattr(deserializer, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    return getattr(descriptor, "full_name", "request")


async def _refuse_or_fail(context: grpc.aio.ServicerContext, method: str, error: Exception) -> None:
    error_id = uuid.uuid4().hex[:16]
    status = status_of(error, error_id)
    if isinstance(error, Refused):
        pass  # the service layer said no: the answer says why, there is nothing to log
    elif status.code == grpc.StatusCode.INTERNAL:
        _log.error("handler failed", method=method, error_id=error_id, exc_info=error)
    else:
        _log.warning("handler failed", method=method, code=status.code.name, error=repr(error))
    await context.abort_with_status(status)


class RequestGuardInterceptor(HandlerInterceptor):
    def __init__(self, unchecked_services: Collection[str] = ()) -> None:
        self._unchecked = tuple(f"/{name}/" for name in unchecked_services)

    def intercept(
        self, method: str, handler: grpc.RpcMethodHandler, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        if handler.request_streaming:  # none of ours: such a handler passes unguarded
            return handler
        checked = not method.startswith(self._unchecked)
        type_name = _type_name(handler.request_deserializer)

        async def admit(request: Any, context: grpc.aio.ServicerContext) -> None:
            if request is MALFORMED:
                await context.abort_with_status(malformed_request(type_name))
            if checked and (problems := request_problems(request)):
                await context.abort_with_status(invalid_argument(problems))

        def wrap(behavior: Behavior, streaming: bool) -> Behavior:
            if streaming:

                async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
                    await admit(request, context)
                    try:
                        async for item in behavior(request, context):
                            yield item
                    except grpc.aio.AbortError:
                        raise
                    except Exception as error:
                        await _refuse_or_fail(context, method, error)

                return stream

            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                await admit(request, context)
                try:
                    return await behavior(request, context)
                except grpc.aio.AbortError:
                    raise
                except Exception as error:
                    await _refuse_or_fail(context, method, error)

            return unary

        return wrap_handler(
            handler, wrap, request_deserializer=_lenient(handler.request_deserializer)
        )
