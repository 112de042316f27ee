"""The console's Starlette application: routes, error answers, security headers."""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import plotly
import structlog
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from services.console.backends import BackendError, Backends
from services.console.health import ConsoleHealth, healthz, livez
from services.console.live import ChangeFeed
from services.console.metrics import Timing
from services.console.users import ConsoleUsers
from services.console.web import campaigns, live, login, overview, segments, users
from services.console.web.access import Forbidden, NotSignedIn
from services.console.web.inputs import FieldError
from services.console.web.render import render_error

STATIC = Path(__file__).resolve().parent.parent / "static"
PLOTLY_JS = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
_log = structlog.get_logger("console")


def _wants_json(request: Request) -> bool:
    return "/api/" in request.url.path or "application/json" in request.headers.get("accept", "")


async def _field_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FieldError)
    if _wants_json(request):
        return JSONResponse(exc.as_json(), status_code=exc.status)
    return render_error(request, exc.status, str(exc))


async def _backend_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BackendError)
    if _wants_json(request):
        return JSONResponse(exc.as_json(), status_code=exc.status)
    detail = "; ".join(f"{f}: {m}" for f, m in exc.fields)
    return render_error(request, exc.status, exc.message + (f" ({detail})" if detail else ""))


async def _not_signed_in(request: Request, exc: Exception) -> Response:
    if _wants_json(request) or request.method != "GET":
        return JSONResponse({"error": "sign in first", "fields": []}, status_code=401)
    return RedirectResponse("/login?next=" + request.url.path, status_code=303)


async def _forbidden(request: Request, exc: Exception) -> Response:
    if _wants_json(request):
        return JSONResponse({"error": str(exc), "fields": []}, status_code=403)
    return render_error(request, 403, str(exc))


async def _unexpected(request: Request, exc: Exception) -> Response:
    _log.exception("console page failed", path=request.url.path)
    if _wants_json(request):
        return JSONResponse({"error": "internal error", "fields": []}, status_code=500)
    return PlainTextResponse("internal error", status_code=500)


async def plotly_js(request: Request) -> Response:
    return Response(
        PLOTLY_JS.read_bytes(),
        media_type="application/javascript",
        headers={"cache-control": "public, max-age=86400"},
    )


class SecurityHeaders:
    """Headers of every answer: no framing, no sniffing, scripts only from here."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-frame-options", b"DENY"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                    (
                        b"content-security-policy",
                        b"default-src 'self'; script-src 'self' 'unsafe-eval'; "
                        b"style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                        b"frame-ancestors 'none'; form-action 'self'",
                    ),
                ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, sending)


def create_app(
    users_store: ConsoleUsers,
    backends: Backends,
    feed: ChangeFeed,
    health: ConsoleHealth,
    *,
    session_hours: float,
    cookie_secure: bool,
) -> Starlette:
    app_routes = [
        *overview.routes(),
        *segments.routes(),
        *users.routes(),
        *campaigns.routes(),
        *live.routes(),
    ]
    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/livez", livez),
            Route("/static/plotly.min.js", plotly_js),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
            *login.routes(),
            Mount("/apps/{app_id}", routes=app_routes),
        ],
        middleware=[Middleware(Timing), Middleware(SecurityHeaders)],
        exception_handlers={
            FieldError: _field_error,
            BackendError: _backend_error,
            NotSignedIn: _not_signed_in,
            Forbidden: _forbidden,
            Exception: _unexpected,
        },
    )
    app.state.users = users_store
    app.state.backends = backends
    app.state.feed = feed
    app.state.health = health
    app.state.session_hours = session_hours
    app.state.cookie_secure = cookie_secure
    return app
