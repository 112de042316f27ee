"""Hostile input to every kind of console endpoint: NUL bytes, huge sizes, deep nesting,
random bytes. Each answer is a 4xx naming the field (JSON for APIs), never a 500."""

from __future__ import annotations

import json
import os

import httpx
import pytest

from tests.support.console import ConsoleStack, csrf_of, signed_in

pytestmark = pytest.mark.e2e
APIS = ("validate", "preview", "publish")


@pytest.fixture(scope="module")
def ana(stack: ConsoleStack) -> tuple[httpx.Client, dict[str, str]]:
    client = signed_in(stack, "ana")
    return client, {"x-csrf-token": csrf_of(client, "/apps/shop/segments")}


def _fields(reply: httpx.Response) -> list[str]:
    body = reply.json()
    assert body["error"], body
    return [f["field"] for f in body["fields"]]


@pytest.mark.parametrize("api", APIS)
def test_malformed_bodies_are_refused_naming_the_body(ana, api: str):
    client, headers = ana
    url = f"/apps/shop/api/segments/{api}"
    bodies = [
        os.urandom(512),
        b"\xff\xfe\x00garbage",
        b"[1, 2, 3]",
        b"{" * 5000 + b"}" * 5000,
        b'{"segment_id": "x", "condition": ' + b"[" * 2000 + b"]" * 2000 + b"}",
    ]
    for body in bodies:
        reply = client.post(
            url, content=body, headers={**headers, "content-type": "application/json"}
        )
        assert 400 <= reply.status_code < 500, (body[:40], reply.text)
        assert _fields(reply)


@pytest.mark.parametrize("api", APIS)
def test_a_huge_body_is_refused(ana, api: str):
    client, headers = ana
    reply = client.post(
        f"/apps/shop/api/segments/{api}",
        content=b'{"a": "' + b"x" * 2_000_000 + b'"}',
        headers={**headers, "content-type": "application/json"},
    )
    assert reply.status_code == 413 and _fields(reply) == ["body"]


def test_nul_and_control_characters_are_refused_naming_the_field(ana):
    client, headers = ana
    cases = {
        "segment_id": {"segment_id": "a\x00b", "condition": {"lifecycle": ["new"]}},
        "display_name": {
            "segment_id": "ok",
            "display_name": "x\x00",
            "condition": {"lifecycle": ["new"]},
        },
        "segment.condition.trait.key": {"condition": {"trait": {"key": "a\x00", "op": "exists"}}},
        "segment.condition.all[0].events.name": {
            "condition": {"all": [{"events": {"name": "\x1b[31mred", "op": ">=", "value": 1}}]}
        },
    }
    for field, body in cases.items():
        reply = client.post("/apps/shop/api/segments/validate", json=body, headers=headers)
        assert reply.status_code == 400, (field, reply.text)
        assert field in _fields(reply), (field, reply.json())


def test_deeply_nested_definitions_are_refused_naming_the_node(ana):
    client, headers = ana
    condition: dict = {"lifecycle": ["new"]}
    for _ in range(30):
        condition = {"all": [condition]}
    reply = client.post(
        "/apps/shop/api/segments/validate", json={"condition": condition}, headers=headers
    )
    assert reply.status_code == 400
    assert any(f.startswith("segment.condition.all[0]") for f in _fields(reply))
    deeper: dict = {"x": 1}
    for _ in range(200):
        deeper = {"x": deeper}
    reply = client.post(
        "/apps/shop/api/segments/validate", json={"condition": deeper}, headers=headers
    )
    assert reply.status_code == 400 and _fields(reply)


def test_wrong_types_and_unknown_kinds_get_the_definition_languages_messages(ana):
    client, headers = ana
    cases = [
        ({"condition": "all"}, "segment.condition"),
        ({"condition": {"teleport": 1}}, "segment.condition"),
        (
            {"condition": {"events": {"name": "x", "op": ">=", "value": 1, "window": "3x"}}},
            "segment.condition.events.window",
        ),
        ({"condition": {"segment": "no-such-segment"}}, "segment.condition"),
        (
            {"condition": {"lifecycle": ["new"]}, "expected_version": "two", "segment_id": "x"},
            "expected_version",
        ),
    ]
    for body, field in cases:
        api = "publish" if "expected_version" in body else "validate"
        reply = client.post(f"/apps/shop/api/segments/{api}", json=body, headers=headers)
        assert reply.status_code == 400, (body, reply.text)
        assert field in _fields(reply), (body, reply.json())


def test_hostile_query_parameters_and_paths_are_refused(ana):
    client, _ = ana
    for path, field in (
        ("/apps/shop/?start=not-a-date", "start"),
        ("/apps/shop/?start=0001-01-01", "start"),
        ("/apps/shop/?start=2026-02-01&end=2026-01-01", "start"),
        ("/apps/shop/segments/x%00y", "segment_id"),
        ("/apps/shop/users/" + "u" * 5000, "user_id"),
        ("/apps/shop/users?q=%00", "q"),
        ("/apps/shop/campaigns/%01", "campaign_id"),
        ("/apps/sh%00op/", "app_id"),
    ):
        reply = client.get(path, headers={"accept": "application/json"})
        assert 400 <= reply.status_code < 500, (path, reply.status_code, reply.text[:200])
        if reply.status_code == 400:
            assert field in _fields(reply), (path, reply.json())


def test_hostile_campaign_forms_get_a_form_error_naming_the_field(ana):
    client, headers = ana
    token = headers["x-csrf-token"]
    request_id = "r-" + os.urandom(4).hex()
    cases = [
        ("name: x\nbogus: 1\n", "campaign.bogus"),
        ("a: &a [1]\nb: [*a, *a]\n", "aliases are not allowed"),
        ("- [" * 500 + "]" * 500, "form"),
        ("name: x\x00\n", "form"),
        (os.urandom(200).decode("latin-1"), "form"),
    ]
    for text, expected in cases:
        reply = client.post(
            "/apps/shop/campaigns/new",
            data={"csrf_token": token, "form": text, "request_id": request_id},
        )
        assert 400 <= reply.status_code < 500, (text[:30], reply.status_code)
        assert expected in reply.text, (text[:30], reply.text[-800:])
    huge = client.post(
        "/apps/shop/campaigns/new",
        data={"csrf_token": token, "form": "x" * 2_000_000, "request_id": request_id},
    )
    assert huge.status_code == 413


def test_the_restore_form_checks_its_version(ana):
    client, headers = ana
    for version in ("", "abc", "-1", "9" * 40, "1\x00"):
        reply = client.post(
            "/apps/shop/segments/s/restore",
            data={"csrf_token": headers["x-csrf-token"], "version": version},
            headers={"accept": "application/json"},
        )
        assert reply.status_code == 400 and _fields(reply) == ["version"], (version, reply.text)
    assert json.dumps(headers)
