"""Refusals of the HTTP tracking API: a 4xx naming what is wrong, and nothing stored."""

from __future__ import annotations

import gzip
import json
import os
from typing import Any

import httpx
import orjson

from tests.support.eventlog import stored_events
from tests.support.segment_http import basic, track


def fields_of(answer: httpx.Response) -> dict[str, str]:
    body = answer.json()
    assert isinstance(body["error"], str) and body["error"]
    return {item["field"]: item["message"] for item in body["fields"]}


AUTH_CASES = [
    (None, "is missing"),
    ("Bearer key-shop", "not Basic"),
    ("Basic ***", "not base64"),
    (basic(""), "names no write key"),
    (basic("key-nobody"), "unknown write key"),
]


async def test_a_call_without_a_known_write_key_is_401(
    http: httpx.AsyncClient, database_url: str
) -> None:
    for authorization, why in AUTH_CASES:
        headers = {"Content-Type": "application/json"}
        if authorization is not None:
            headers["Authorization"] = authorization
        answer = await http.post("/v1/track", json=track(), headers=headers)
        assert answer.status_code == 401, authorization
        assert why in fields_of(answer)["Authorization"]
        assert answer.headers["www-authenticate"].startswith("Basic")
    assert stored_events(database_url) == []


async def test_the_password_is_not_read(http: httpx.AsyncClient, database_url: str) -> None:
    headers = {"Authorization": basic("key-shop", "anything"), "Content-Type": "application/json"}
    assert (await http.post("/v1/track", json=track(), headers=headers)).status_code == 200


async def test_another_apps_key_never_touches_this_app(
    http: httpx.AsyncClient, shop: dict[str, str], news: dict[str, str], database_url: str
) -> None:
    call = track(user="alice")
    assert (await http.post("/v1/track", json=call, headers=shop)).status_code == 200
    # The same messageId and user under the other app's key: a new event of that app.
    answer = await http.post("/v1/track", json=call, headers=news)
    assert answer.json()["results"][0]["status"] == "accepted"
    # A body naming the other app or its key is no way in: the header decides.
    sneaky = {**track(), "writeKey": "key-shop", "context": {"app": {"name": "shop"}}}
    await http.post("/v1/track", json=sneaky, headers=news)
    by_app: dict[str, list[str]] = {}
    for event in stored_events(database_url):
        by_app.setdefault(event.app_id, []).append(event.event_id)
    assert by_app == {"shop": [call["messageId"]], "news": [call["messageId"], sneaky["messageId"]]}


MEDIA_CASES = [
    ({"Content-Type": "text/plain"}, "Content-Type"),
    ({"Content-Type": "application/x-www-form-urlencoded"}, "Content-Type"),
    ({"Content-Type": ""}, "Content-Type"),
    ({"Content-Type": "application/json", "Content-Encoding": "br"}, "Content-Encoding"),
]


async def test_a_body_that_is_not_json_or_gzip_is_415(
    http: httpx.AsyncClient, database_url: str
) -> None:
    for given, field in MEDIA_CASES:
        headers = {"Authorization": basic("key-shop"), **given}
        answer = await http.post("/v1/track", content=orjson.dumps(track()), headers=headers)
        assert answer.status_code == 415, given
        assert field in fields_of(answer)
    assert stored_events(database_url) == []


def _padded(size: int) -> dict[str, Any]:
    return track(properties={"note": "x" * size})


async def test_bodies_over_segments_limits_are_413_before_they_are_parsed(
    http: httpx.AsyncClient, shop: dict[str, str], database_url: str
) -> None:
    one = await http.post("/v1/track", content=orjson.dumps(_padded(33_000)), headers=shop)
    assert one.status_code == 413 and "32768 bytes" in fields_of(one)["body"]
    calls = [{"type": "track", **_padded(900)} for _ in range(600)]
    batch = await http.post("/v1/batch", json={"batch": calls}, headers=shop)
    assert batch.status_code == 413 and "512000 bytes" in fields_of(batch)["body"]
    # Past the limit is refused before parsing: what follows the limit is not even JSON.
    garbage = b'{"batch": [' + b" " * 600_000
    assert (await http.post("/v1/batch", content=garbage, headers=shop)).status_code == 413

    async def chunked() -> Any:  # no Content-Length: counted while read
        for _ in range(40):
            yield b" " * 1000

    streamed = await http.post("/v1/track", content=chunked(), headers=shop)
    assert streamed.status_code == 413
    # A gzip body is judged by what it inflates to: a small bomb is refused.
    bomb = gzip.compress(b"[" + b" " * 5_000_000 + b"]")
    zipped = await http.post(
        "/v1/batch", content=bomb, headers={**shop, "Content-Encoding": "gzip"}
    )
    assert zipped.status_code == 413
    assert stored_events(database_url) == []


async def test_a_call_too_large_inside_a_batch_is_refused_alone(
    http: httpx.AsyncClient, shop: dict[str, str], database_url: str
) -> None:
    small = {"type": "track", **track()}
    large = {"type": "track", **_padded(40_000)}
    answer = await http.post("/v1/batch", json={"batch": [small, large]}, headers=shop)
    assert answer.status_code == 400
    assert "more than the 32768" in fields_of(answer)["batch[1]"]
    assert [e.event_id for e in stored_events(database_url)] == [small["messageId"]]


_CALL = b'{"type": "track", "userId": "a", "event": "x", '
HOSTILE_CASES = [
    (b'{"userId": "a", "event": "x\x00y"}', "body", "not JSON"),
    (b'{"userId": "a", "event": "caf\xe9"}', "body", "not UTF-8: byte 29 is 0xe9"),
    (os.urandom(64).replace(b"{", b"!"), "body", ""),
    (b"[" * 5000 + b"]" * 5000, "body", "not JSON"),
    (b'["a call?"]', "body", "must be a JSON object"),
    (b'{"userId": "a", "event": "x", "properties": {"s": "\\ud800"}}', "body", "not JSON"),
    (_CALL + b'"properties": {"n": 1e400}}', "properties.n", "finite"),
    (_CALL + b'"properties": {"n": NaN}}', "properties.n", "finite"),
    (_CALL + b'"properties": {"n": ' + b"9" * 5000 + b"}}", "properties.n", "finite"),
    (_CALL + b'"properties": {"s": "a\\u0000b"}}', "properties.s", "NUL"),
    (_CALL + b'"properties": {"k\\u0000": 1}}', 'properties["k\\u0000"]', "NUL"),
    (_CALL + b'"properties": ' + b'{"a": ' * 20 + b"1" + b"}" * 21, "properties.a.a.a.a.a.a.a.a",
     "deep"),
    (_CALL + b'"properties": []}', "properties", "object"),
    (_CALL + b'"context": "ios"}', "context", "object"),
    (_CALL + b'"timestamp": "yesterday"}', "timestamp", "ISO-8601"),
    (_CALL + b'"timestamp": "1999-01-01T00:00:00Z"}', "timestamp", "before 2000"),
    (_CALL + b'"messageId": "has space"}', "messageId", "printable"),
    (_CALL + b'"context": {"timezone": "Mars/Base"}}', "context.timezone", "time zone"),
    (_CALL + b'"context": {"location": {"latitude": 91, "longitude": 0}}}',
     "context.location.latitude", "-90"),
    (b'{"type": "track", "userId": ["a"], "event": "x"}', "userId", "string"),
    (b'{"type": "track", "userId": "a", "event": {"name": "x"}}', "event", "string"),
    (b'{"type": "track", "userId": "a"}', "event", "required"),
    (b'{"type": "track", "event": "x"}', "userId", "anonymousId"),
    (b'{"type": "track", "userId": Infinity, "event": "x"}', "userId", "finite"),
]  # fmt: skip


async def test_hostile_bodies_are_400_naming_the_field(
    http: httpx.AsyncClient, shop: dict[str, str], database_url: str
) -> None:
    for body, field, why in HOSTILE_CASES:
        answer = await http.post("/v1/track", content=body, headers=shop)
        assert answer.status_code == 400, (body[:80], answer.text)
        found = fields_of(answer)
        assert field in found, (body[:80], found)
        assert why in found[field], (body[:80], found)
    # The same calls inside a batch beside a good one: named under their place in it.
    for body, field, why in HOSTILE_CASES:
        if field == "body":
            continue
        batch = b'{"batch": [{"type": "track", "userId": "a", "event": "ok"}, ' + body + b"]}"
        answer = await http.post("/v1/batch", content=batch, headers=shop)
        assert answer.status_code == 400, (body[:80], answer.text)
        assert why in fields_of(answer)[f"batch[1].{field}"], (body[:80], answer.text)
    assert {event.name for event in stored_events(database_url)} == {"ok"}


async def test_identify_rules_name_the_segment_fields(
    http: httpx.AsyncClient, shop: dict[str, str], database_url: str
) -> None:
    call = {
        "userId": "a",
        "traits": {"phone": "call me", "bad key!": 1, "long": "x" * 2000},
        "context": {"timezone": "Nowhere/City", "device": {"token": "t\x01"}},
    }
    answer = await http.post("/v1/identify", json=call, headers=shop)
    assert answer.status_code == 400
    found = fields_of(answer)
    assert "1024 characters" in found["traits.long"]
    assert "time zone" in found["context.timezone"]
    assert "printable" in found["context.device.token"]
    alias = await http.post("/v1/alias", json={"userId": "a", "previousId": "\tb"}, headers=shop)
    assert "previousId" in fields_of(alias)
    group = await http.post("/v1/group", json={"userId": "a", "groupId": ""}, headers=shop)
    assert "groupId" in fields_of(group)
    assert stored_events(database_url) == []


async def test_a_batch_with_bad_calls_stores_the_good_ones_and_names_the_bad(
    http: httpx.AsyncClient, shop: dict[str, str], database_url: str
) -> None:
    good = [{"type": "track", **track()} for _ in range(3)]
    calls: list[Any] = [
        good[0],
        {"type": "track", **track(properties={"price": float("inf")})},
        good[1],
        {"type": "track", **track(event="")},
        "not a call",
        {"type": "shout", "userId": "a"},
        good[2],
    ]
    body = json.dumps({"batch": calls}).encode()  # writes Infinity, as Python clients do
    answer = await http.post("/v1/batch", content=body, headers=shop)
    assert answer.status_code == 400, answer.text
    payload = answer.json()
    assert payload["error"].startswith("4 of 7 calls refused")
    statuses = [result["status"] for result in payload["results"]]
    assert statuses == ["accepted", "rejected", "accepted", "rejected", "rejected", "rejected",
                        "accepted"]  # fmt: skip
    found = fields_of(answer)
    assert "finite" in found["batch[1].properties.price"]
    assert "required" in found["batch[3].event"]
    assert "object" in found["batch[4]"]
    assert "not a Segment call" in found["batch[5].type"]
    stored = [event.event_id for event in stored_events(database_url)]
    assert stored == [call["messageId"] for call in good]
    # The whole batch again: the stored calls are duplicates, the bad still refused.
    again = await http.post("/v1/batch", content=body, headers=shop)
    assert [r["status"] for r in again.json()["results"]].count("duplicate") == 3
    assert len(stored_events(database_url)) == 3


BATCH_CASES = [
    ({"calls": []}, "batch"),
    ({"batch": []}, "batch"),
    ({"batch": {"type": "track"}}, "batch"),
    ({"batch": [{"type": "track"}] * 2501}, "batch"),
    ({"batch": [{"type": "track", "userId": "a", "event": "x"}], "context": [1]}, "context"),
]


async def test_a_malformed_batch_is_400_and_stores_nothing(
    http: httpx.AsyncClient, shop: dict[str, str], database_url: str
) -> None:
    for body, field in BATCH_CASES:
        answer = await http.post("/v1/batch", json=body, headers=shop)
        assert answer.status_code == 400, body
        assert field in fields_of(answer)
    assert stored_events(database_url) == []


async def test_unknown_paths_and_methods_answer_json(http: httpx.AsyncClient) -> None:
    missing = await http.post("/v1/shout", json={})
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    wrong = await http.get("/v1/track")
    assert wrong.status_code == 405 and "POST" in wrong.json()["error"]
