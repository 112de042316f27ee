"""The Starlette application of the HTTP tracking API: Segment's endpoints and /healthz.

`POST /v1/track|identify|alias|page|screen|group` take one call (the endpoint sets its
`type`), `POST /v1/batch` takes `{"batch": [calls], "context": {...}}` (the batch's
context is the default of every call's). A request is checked in order: write key (401),
media type and encoding (415), size (413), JSON (400); then every call is judged on its
own. The answer comes after the calls' events are committed to the log:
- 200 `{"success": true, "results": [{"messageId", "status", "position"}]}` when every
  call was stored (`status` is `accepted`, or `duplicate` for a messageId stored before);
- 400 with `fields` naming each bad field (`batch[3].properties.price`) and `results`
  for every call: the bad calls are `rejected` and nothing of them is stored; the good
  calls of the same batch *are* stored (a retry of the whole batch is safe: they come
  back `duplicate`);
- 503 when the event store is unavailable (nothing acknowledged; retry the same calls).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
import structlog
from eventsourcing.persistence import PersistenceError as EventStoreError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.common.formats.segment import TYPES
from services.common.grpc.auth import ApiKeys
from services.ingest import metrics
from services.ingest.domain.model import Limits
from services.ingest.http.auth import app_of
from services.ingest.http.body import parse_json, read_body
from services.ingest.http.calls import Judged, judge
from services.ingest.http.refusal import Refusal, bad_field
from services.ingest.routing import PartitionedAppender

_log = structlog.get_logger("ingest.http")
Where = Callable[[int], str]


@dataclass(frozen=True)
class HttpLimits:
    """Bytes of one call's body, of one batch's body, and calls in one batch."""

    call_bytes: int = 32 * 1024
    batch_bytes: int = 500 * 1024
    batch_calls: int = 2500


def _wall_clock_us() -> int:
    return time.time_ns() // 1000


def _join(prefix: str, path: str) -> str:
    if not prefix:
        return path or "body"
    return f"{prefix}.{path}" if path and not path.startswith("[") else prefix + path


class TrackingApi:
    """Segment's tracking endpoints over ingest's appender; `app` is the ASGI application."""

    def __init__(
        self,
        appender: PartitionedAppender,
        keys: ApiKeys,
        limits: Limits,
        http_limits: HttpLimits,
        clock_us: Callable[[], int] = _wall_clock_us,
    ) -> None:
        self._appender = appender
        self._keys = keys
        self._limits = limits
        self._http = http_limits
        self._clock_us = clock_us
        self.serving = True
        routes = [
            Route(
                f"/v1/{kind}", self._endpoint(f"/v1/{kind}", self._single(kind)), methods=["POST"]
            )
            for kind in TYPES
        ]
        routes.append(
            Route("/v1/batch", self._endpoint("/v1/batch", self._batch), methods=["POST"])
        )
        routes.append(Route("/healthz", self._health, methods=["GET"]))
        self.app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})

    async def _health(self, request: Request) -> Response:
        if self.serving:
            return JSONResponse({"status": "serving"})
        return JSONResponse({"status": "draining"}, status_code=503)

    def _endpoint(
        self, path: str, handle: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            try:
                response = await handle(request)
            except Refusal as refusal:
                response = refusal.response()
            except ClientDisconnect:
                response = Refusal(400, "disconnect", "the client left mid-body").response()
            except Exception:
                error_id = uuid.uuid4().hex[:12]
                _log.exception("http request failed", path=path, error_id=error_id)
                response = JSONResponse(
                    {
                        "error": f"internal error; the server logged it as {error_id}",
                        "code": "internal",
                        "fields": [],
                    },
                    status_code=500,
                )
            metrics.HTTP_SECONDS.labels(path).observe(time.perf_counter() - started)
            metrics.HTTP_REQUESTS.labels(path, str(response.status_code)).inc()
            return response

        return endpoint

    def _single(self, kind: str) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            app_id = app_of(request.headers.get("authorization"), self._keys)
            body = parse_json(await read_body(request, self._http.call_bytes, "one call"))
            if not isinstance(body, dict):
                raise bad_field("body", "must be a JSON object: one Segment call")
            return await self._store(app_id, [{**body, "type": kind}], lambda _: "")

        return handle

    async def _batch(self, request: Request) -> Response:
        app_id = app_of(request.headers.get("authorization"), self._keys)
        body = parse_json(await read_body(request, self._http.batch_bytes, "a batch"))
        if not isinstance(body, dict):
            raise bad_field("body", 'must be a JSON object: {"batch": [calls]}')
        calls = body.get("batch")
        if not isinstance(calls, list) or not calls:
            raise bad_field("batch", "is required: a list of at least one call")
        if len(calls) > self._http.batch_calls:
            most = self._http.batch_calls
            raise bad_field("batch", f"at most {most} calls per batch, got {len(calls)}")
        shared = body.get("context")
        if shared is not None and not isinstance(shared, dict):
            raise bad_field("context", "must be an object (the default context of every call)")
        if shared:
            calls = [_with_context(call, shared) for call in calls]
        return await self._store(app_id, calls, lambda index: f"batch[{index}]")

    def _judge(self, call: Any, app_id: str, now_us: int) -> Judged:
        if isinstance(call, dict):
            try:
                size = len(orjson.dumps(call))
            except orjson.JSONEncodeError:
                size = 0  # nests too deep to measure: the mapping names where
            if size > self._http.call_bytes:
                most = f"is {size} bytes, more than the {self._http.call_bytes} one call may carry"
                return Judged(str(call.get("messageId") or ""), "", problems=(("", most),))
        return judge(call, app_id, now_us, self._limits)

    async def _store(self, app_id: str, calls: Sequence[Any], where: Where) -> Response:
        now_us = self._clock_us()
        judged = [self._judge(call, app_id, now_us) for call in calls]
        events = [event for item in judged for event in item.events]
        try:
            appended = iter(await self._appender.append(events))
        except (OSError, EventStoreError, psycopg.Error) as error:
            _log.warning("append failed", error=repr(error))
            raise Refusal(
                503,
                "unavailable",
                "the event store is unavailable; retry the same calls (their messageIds"
                " make it safe)",
                headers={"Retry-After": "1"},
            ) from None
        results: list[dict[str, Any]] = []
        fields: list[tuple[str, str]] = []
        for index, item in enumerate(judged):
            kind = item.kind if item.kind in TYPES else "unknown"
            if item.problems:
                named = [(_join(where(index), path), why) for path, why in item.problems]
                fields.extend(named)
                results.append(_rejected(item.message_id, named))
                metrics.HTTP_CALLS.labels(kind, "rejected").inc()
                continue
            outcomes = [next(appended) for _ in item.events]
            status = "duplicate" if outcomes[0].duplicate else "accepted"
            results.append(
                {"messageId": item.message_id, "status": status, "position": outcomes[0].position}
            )
            metrics.HTTP_CALLS.labels(kind, status).inc()
        if not fields:
            return JSONResponse({"success": True, "results": results})
        rejected = sum(1 for result in results if result["status"] == "rejected")
        stored = len(results) - rejected
        message = (
            f"{rejected} of {len(results)} calls refused, nothing of them stored"
            + (f"; the other {stored} were stored" if stored else "")
            if len(results) > 1
            else f"the call was refused: {fields[0][0]}: {fields[0][1]}"
        )
        refusal = Refusal(400, "invalid", message, fields)
        metrics.HTTP_REFUSALS.labels(refusal.code).inc()
        return JSONResponse({**refusal.body(), "results": results}, status_code=400)


def _rejected(message_id: str, fields: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "messageId": message_id,
        "status": "rejected",
        "fields": [{"field": field, "message": why} for field, why in fields],
    }


def _with_context(call: Any, shared: dict[str, Any]) -> Any:
    """The call with the batch's context under its own (the call's keys win)."""
    if not isinstance(call, dict):
        return call
    own = call.get("context")
    if own is None:
        return {**call, "context": shared}
    if isinstance(own, dict):
        return {**call, "context": {**shared, **own}}
    return call  # not an object: the mapping names it


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method"}.get(exc.status_code, "http")
    message = {
        404: f"no such endpoint {request.url.path[:80]!r}; POST to /v1/track, /v1/batch, ...",
        405: f"{request.method} is not allowed here; POST a JSON body",
    }.get(exc.status_code, str(exc.detail))
    metrics.HTTP_REFUSALS.labels(code).inc()
    return JSONResponse(
        {"error": message, "code": code, "fields": []},
        status_code=exc.status_code,
        headers=exc.headers,
    )
