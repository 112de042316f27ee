"""Who is asking and for which app: the session cookie, the app binding, CSRF.

Every page and API of an app goes through `require(request, app_id, ...)`: it finds
the session, checks the user is bound to the app (and is an editor if the request
changes anything), checks the CSRF token of every change, and only then hands out
the clients that carry that app's key. An app id in a URL is never used without it.
"""

from __future__ import annotations

import asyncio
import hmac
from dataclasses import dataclass

from starlette.requests import Request

from services.console.backends import AppClients, Backends, NoKeyError
from services.console.users import ConsoleUsers, Session
from services.console.web.inputs import FieldError, ident

SESSION_COOKIE = "cf_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"


class NotSignedIn(Exception):
    """No valid session: pages redirect to the sign-in, APIs answer 401."""


class Forbidden(Exception):
    """Signed in, but not allowed this (403)."""


@dataclass(frozen=True)
class Access:
    session: Session
    app_id: str
    role: str
    clients: AppClients

    @property
    def editor(self) -> bool:
        return self.role == "editor"


async def current_session(request: Request) -> Session | None:
    token = request.cookies.get(SESSION_COOKIE, "")
    if not token or len(token) > 200:
        return None
    users: ConsoleUsers = request.app.state.users
    return await asyncio.to_thread(users.session, token)


async def signed_in(request: Request) -> Session:
    session = await current_session(request)
    if session is None:
        raise NotSignedIn
    return session


def check_csrf(session: Session, sent: str | None) -> None:
    if not sent or not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
        raise Forbidden("the form is stale or came from elsewhere (CSRF token); reload the page")


async def require(
    request: Request, *, editor: bool = False, csrf: str | None = None, change: bool = False
) -> Access:
    """The access of the signed-in user to the URL's app, or NotSignedIn / Forbidden.

    `change`: the request changes something or runs work on the user's behalf, so it
    must carry the session's CSRF token (form field or X-CSRF-Token header).
    """
    session = await signed_in(request)
    app_id = ident(request.path_params.get("app_id"), "app_id")
    role = session.role(app_id)
    if role is None:
        raise Forbidden(f"you have no access to app {app_id!r}")
    if change or editor:
        check_csrf(session, csrf if csrf is not None else request.headers.get(CSRF_HEADER))
    if editor and role != "editor":
        raise Forbidden(f"your role in app {app_id!r} is {role}: only editors may change things")
    backends: Backends = request.app.state.backends
    try:
        clients = backends.for_app(app_id)
    except NoKeyError:
        raise FieldError(
            "app_id", f"the console holds no API key for app {app_id!r}", 503
        ) from None
    return Access(session=session, app_id=app_id, role=role, clients=clients)
