"""Sign-in, sessions, CSRF and tenancy of the console, over HTTP against the real services."""

from __future__ import annotations

import httpx
import pytest

from tests.support.console import PASSWORD, ConsoleStack, csrf_of, signed_in

pytestmark = pytest.mark.e2e
DRAFT = {"segment_id": "s1", "condition": {"lifecycle": ["new"]}}


def test_sign_in_sets_a_secure_http_only_session_cookie(stack: ConsoleStack):
    client = httpx.Client(base_url=stack.url)
    page = client.get("/login")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    login_cookie = page.headers["set-cookie"]
    client.cookies.set("cf_login_csrf", login_cookie.split("=", 1)[1].split(";", 1)[0])
    reply = client.post(
        "/login", data={"csrf_token": token, "username": "ana", "password": PASSWORD}
    )
    assert reply.status_code == 303
    cookie = next(h for h in reply.headers.get_list("set-cookie") if h.startswith("cf_session="))
    attributes = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "secure", "samesite=lax", "path=/"} <= attributes


def test_a_wrong_password_or_unknown_user_is_refused(stack: ConsoleStack):
    client = httpx.Client(base_url=stack.url)
    for username, password in (("ana", "wrong password"), ("nobody", PASSWORD)):
        page = client.get("/login")
        token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        cookie = page.headers["set-cookie"].split("=", 1)[1].split(";", 1)[0]
        client.cookies.set("cf_login_csrf", cookie)
        reply = client.post(
            "/login", data={"csrf_token": token, "username": username, "password": password}
        )
        assert reply.status_code == 401
        assert "cf_session" not in reply.headers.get("set-cookie", "")


def test_sign_in_without_its_csrf_cookie_is_refused(stack: ConsoleStack):
    reply = httpx.post(
        stack.url + "/login", data={"csrf_token": "x", "username": "ana", "password": PASSWORD}
    )
    assert reply.status_code == 403


def test_pages_need_a_session(stack: ConsoleStack):
    reply = httpx.get(stack.url + "/apps/shop/segments")
    assert reply.status_code == 303 and reply.headers["location"].startswith("/login")
    api = httpx.post(stack.url + "/apps/shop/api/segments/validate", json=DRAFT)
    assert api.status_code == 401 and api.json()["error"] == "sign in first"


def test_every_change_needs_the_csrf_token(stack: ConsoleStack):
    client = signed_in(stack, "ana")
    for path in ("/apps/shop/api/segments/validate", "/apps/shop/api/segments/publish"):
        refused = client.post(path, json=DRAFT)
        assert refused.status_code == 403, path
        forged = client.post(path, json=DRAFT, headers={"x-csrf-token": "forged"})
        assert forged.status_code == 403, path
    for path in ("/apps/shop/segments/s1/restore", "/apps/shop/campaigns/new", "/logout"):
        assert client.post(path, data={"version": "1"}).status_code in (403,), path
    token = csrf_of(client, "/apps/shop/segments")
    ok = client.post(
        "/apps/shop/api/segments/validate", json=DRAFT, headers={"x-csrf-token": token}
    )
    assert ok.status_code == 200 and ok.json()["ok"] is True


def test_logout_ends_the_session_on_the_server(stack: ConsoleStack):
    client = signed_in(stack, "ana")
    session = client.cookies["cf_session"]
    token = csrf_of(client, "/apps/shop/")
    out = client.post("/logout", data={"csrf_token": token})
    assert out.status_code == 303
    assert any(
        h.startswith('cf_session=""') or h.startswith("cf_session=;")
        for h in out.headers.get_list("set-cookie")
    ), out.headers
    # The old session token, sent again (as a copied cookie would be), opens nothing.
    stale = httpx.Client(base_url=stack.url, cookies={"cf_session": session})
    reply = stale.get("/apps/shop/")
    assert reply.status_code == 303 and reply.headers["location"].startswith("/login")
    api = stale.post(
        "/apps/shop/api/segments/validate", json=DRAFT, headers={"x-csrf-token": token}
    )
    assert api.status_code == 401


def _app_routes() -> list[tuple[str, str]]:
    """(method, path) of every page and API of an app, with placeholder ids: the routes the
    console declares, so a new one is checked without a change here."""
    from starlette.routing import Route

    from services.console.web import campaigns, live, overview, segments, users

    found = []
    for module in (overview, segments, users, campaigns, live):
        for route in module.routes():
            assert isinstance(route, Route)
            path = route.path.replace("{segment_id}", "s1").replace("{campaign_id}", "c1")
            path = path.replace("{user_id:path}", "u1")
            found += [(m, path) for m in sorted(route.methods or ()) if m != "HEAD"]
    return found


CHANGES = [(m, p) for m, p in _app_routes() if m == "POST"]
EDITOR_ONLY = {
    "/api/segments/publish",
    "/segments/s1/restore",
    "/campaigns/new",
    "/campaigns/c1/pause",
    "/campaigns/c1/resume",
}


def test_every_change_of_an_app_is_refused_without_or_with_a_forged_csrf_token(
    stack: ConsoleStack,
):
    assert {p for _, p in CHANGES} >= EDITOR_ONLY | {"/api/segments/validate"}
    client = signed_in(stack, "ana")
    for _, path in CHANGES:
        for headers in ({}, {"x-csrf-token": "forged"}):
            reply = client.post(
                "/apps/shop" + path, json=DRAFT, headers={"accept": "application/json", **headers}
            )
            assert reply.status_code == 403, (path, headers, reply.text[:200])
            assert "CSRF" in reply.json()["error"], path
        form = client.post("/apps/shop" + path, data={"csrf_token": "forged", "version": "1"})
        assert form.status_code == 403, path


def test_a_viewer_is_refused_every_edit_with_a_valid_token(stack: ConsoleStack):
    client = signed_in(stack, "vic")
    token = csrf_of(client, "/apps/shop/segments")
    for path in sorted(EDITOR_ONLY):
        reply = client.post(
            "/apps/shop" + path,
            data={"csrf_token": token, "version": "1", "form": "name: x", "request_id": "r1"},
            headers={"accept": "application/json", "x-csrf-token": token},
        )
        assert reply.status_code == 403, (path, reply.text[:200])
        assert "only editors" in reply.json()["error"], path


def test_no_route_of_another_app_answers(stack: ConsoleStack):
    ana = signed_in(stack, "ana")  # editor of shop only
    token = csrf_of(ana, "/apps/shop/segments")
    for method, path in _app_routes():
        reply = ana.request(
            method,
            "/apps/other" + path,
            headers={"accept": "application/json", "x-csrf-token": token},
            **({"json": DRAFT} if method == "POST" else {}),
        )
        assert reply.status_code == 403, (method, path, reply.text[:200])
        assert "no access to app 'other'" in reply.json()["error"], (method, path)


def test_a_viewer_reads_but_may_not_change(stack: ConsoleStack):
    client = signed_in(stack, "vic")
    assert client.get("/apps/shop/segments").status_code == 200
    token = csrf_of(client, "/apps/shop/segments")
    headers = {"x-csrf-token": token}
    assert (
        client.post("/apps/shop/api/segments/validate", json=DRAFT, headers=headers).status_code
        == 200
    )
    refused = client.post("/apps/shop/api/segments/publish", json=DRAFT, headers=headers)
    assert refused.status_code == 403 and "only editors" in refused.json()["error"]
    form = client.post("/apps/shop/campaigns/new", data={"csrf_token": token, "form": "name: x"})
    assert form.status_code == 403


def test_no_page_or_api_of_another_app(stack: ConsoleStack):
    olga = signed_in(stack, "olga")
    token = csrf_of(olga, "/apps/other/segments")
    created = olga.post(
        "/apps/other/api/segments/publish",
        json={"segment_id": "others-secret", "condition": {"lifecycle": ["new"]}},
        headers={"x-csrf-token": token},
    )
    assert created.status_code == 200, created.text
    ana = signed_in(stack, "ana")
    ana_token = csrf_of(ana, "/apps/shop/segments")
    for path in (
        "/apps/other/",
        "/apps/other/segments",
        "/apps/other/segments/others-secret",
        "/apps/other/users/x",
        "/apps/other/campaigns",
        "/apps/other/live",
        "/apps/other/live/events",
    ):
        assert ana.get(path).status_code == 403, path
    api = ana.post(
        "/apps/other/api/segments/preview", json=DRAFT, headers={"x-csrf-token": ana_token}
    )
    assert api.status_code == 403
    # Through ana's own app, the other app's segment does not exist.
    assert ana.get("/apps/shop/segments/others-secret").status_code == 404
    listed = ana.get("/apps/shop/segments").text
    assert "others-secret" not in listed
    # And a session token of one app is not a token for another app's form.
    assert (
        ana.post(
            "/apps/other/segments/others-secret/restore",
            data={"csrf_token": ana_token, "version": "1"},
        ).status_code
        == 403
    )
