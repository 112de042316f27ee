"""Sign-in, sign-out and the front door."""

from __future__ import annotations

import asyncio
import hmac
import secrets

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from services.console.users import ConsoleUsers
from services.console.web import inputs
from services.console.web.access import (
    CSRF_FIELD,
    SESSION_COOKIE,
    Forbidden,
    check_csrf,
    current_session,
    signed_in,
)
from services.console.web.render import TEMPLATES

LOGIN_CSRF_COOKIE = "cf_login_csrf"


def _safe_next(target: str) -> str:
    """Only a path of this site (no //host, no scheme)."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def _login_page(request: Request, error: str = "", status: int = 200) -> Response:
    token = secrets.token_urlsafe(24)
    response = TEMPLATES.TemplateResponse(
        request,
        "login.html",
        {
            "access": None,
            "error": error,
            "login_csrf": token,
            "next": _safe_next(request.query_params.get("next", "/")),
        },
        status_code=status,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.app.state.cookie_secure,
        path="/login",
    )
    return response


async def login_form(request: Request) -> Response:
    return _login_page(request)


async def login_submit(request: Request) -> Response:
    form = await inputs.form(request)
    sent = str(form.get(CSRF_FIELD, ""))
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise Forbidden("the sign-in form is stale (CSRF token); reload the page")
    username = inputs.ident(form.get("username"), "username")
    password = inputs.text(form.get("password"), "password", max_len=1024, required=True)
    users: ConsoleUsers = request.app.state.users
    if not await asyncio.to_thread(users.verify, username, password):
        return _login_page(request, "Unknown user or wrong password.", 401)
    token = await asyncio.to_thread(users.start_session, username, request.app.state.session_hours)
    target = _safe_next(str(form.get("next", "/")))
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=request.app.state.cookie_secure,
        path="/",
        max_age=int(request.app.state.session_hours * 3600),
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


async def logout(request: Request) -> Response:
    session = await signed_in(request)
    form = await inputs.form(request)
    check_csrf(session, str(form.get(CSRF_FIELD, "")))
    users: ConsoleUsers = request.app.state.users
    await asyncio.to_thread(users.end_session, request.cookies.get(SESSION_COOKIE, ""))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def home(request: Request) -> Response:
    session = await current_session(request)
    if session is None:
        return RedirectResponse("/login", status_code=303)
    if not session.bindings:
        return TEMPLATES.TemplateResponse(
            request,
            "error.html",
            {"access": None, "status": 403, "message": "You are bound to no app yet."},
            status_code=403,
        )
    first = sorted(session.bindings)[0]
    return RedirectResponse(f"/apps/{first}/", status_code=303)


def routes() -> list[Route]:
    return [
        Route("/", home),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login_submit, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]
