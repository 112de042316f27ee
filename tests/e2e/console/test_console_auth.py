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


def test_logout_ends_the_session(stack: ConsoleStack):
    client = signed_in(stack, "ana")
    token = csrf_of(client, "/apps/shop/")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 303
    reply = client.get("/apps/shop/")
    assert reply.status_code == 303 and reply.headers["location"].startswith("/login")


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
