"""Each endpoint of the HTTP tracking API stores what the Segment call says, once."""

from __future__ import annotations

import asyncio
import gzip

import httpx
import orjson

from services.eventlog.events import EventTracked, UserIdentified
from services.ingest.bootstrap import IngestApp
from tests.support.eventlog import stored_events
from tests.support.segment_http import track


async def test_track_is_stored_with_its_properties_and_context(
    http: httpx.AsyncClient, shop: dict[str, str], database_url: str
) -> None:
    call = track(
        properties={"price": 9.5, "sku": "A-1", "address": {"city": "Berlin"}},
        context={"os": {"name": "iOS", "version": "17.2"}, "locale": "de-DE"},
        timestamp="2026-01-02T03:04:05.678Z",
        integrations={"All": False},
    )
    answer = await http.post("/v1/track", json=call, headers=shop)
    assert answer.status_code == 200, answer.text
    (result,) = answer.json()["results"]
    assert answer.json()["success"] is True
    assert result["messageId"] == call["messageId"] and result["status"] == "accepted"
    (stored,) = stored_events(database_url)
    assert isinstance(stored, EventTracked)
    assert (stored.app_id, stored.event_id, stored.user_id) == ("shop", call["messageId"], "alice")
    assert stored.name == "Added to Cart"
    assert stored.properties == {"price": 9.5, "sku": "A-1", "address.city": "Berlin"}
    assert stored.context == {"os": "iOS 17.2", "locale": "de-DE"}
    assert stored.event_time_us == 1_767_323_045_678_000
    assert result["position"] > 0


async def test_a_retry_with_the_same_message_id_is_a_duplicate_stored_once(
    http: httpx.AsyncClient, shop: dict[str, str], database_url: str
) -> None:
    call = track()
    first, again = [await http.post("/v1/track", json=call, headers=shop) for _ in range(2)]
    assert first.json()["results"][0]["status"] == "accepted"
    assert again.status_code == 200
    assert again.json()["results"][0]["status"] == "duplicate"
    assert again.json()["results"][0]["position"] == first.json()["results"][0]["position"]
    concurrent = await asyncio.gather(
        *(
            http.post("/v1/batch", json={"batch": [{"type": "track", **call}]}, headers=shop)
            for _ in range(10)
        )
    )
    assert {answer.json()["results"][0]["status"] for answer in concurrent} == {"duplicate"}
    assert len(stored_events(database_url)) == 1


async def test_identify_page_screen_alias_and_group(
    http: httpx.AsyncClient, shop: dict[str, str], database_url: str
) -> None:
    calls = {
        "identify": {
            "userId": "alice",
            "traits": {"email": "alice@example.com", "plan": "pro"},
            "context": {"timezone": "Europe/Berlin"},
        },
        "page": {"anonymousId": "anon-1", "name": "Pricing", "properties": {"path": "/p"}},
        "screen": {"userId": "alice", "name": "Home"},
        "alias": {"previousId": "anon-1", "userId": "alice"},
        "group": {"userId": "alice", "groupId": "acme", "traits": {"seats": 12}},
    }
    for kind, call in calls.items():
        answer = await http.post(f"/v1/{kind}", json={"messageId": kind, **call}, headers=shop)
        assert answer.status_code == 200, (kind, answer.text)
    identify, page, screen, alias, group = stored_events(database_url)
    assert isinstance(identify, UserIdentified) and identify.contact == {
        "email": "alice@example.com"
    }
    assert identify.traits == {"plan": "pro"} and identify.timezone == "Europe/Berlin"
    assert isinstance(page, EventTracked) and page.name == "Page Viewed"
    assert page.anonymous_id == "anon-1"
    assert page.properties == {"path": "/p", "name": "Pricing"}
    assert isinstance(screen, EventTracked) and screen.name == "Screen Viewed"
    assert isinstance(alias, UserIdentified)
    assert (alias.user_id, alias.anonymous_id) == ("alice", "anon-1")
    assert isinstance(group, UserIdentified)
    assert group.traits == {"group_id": "acme", "group.seats": 12.0}


async def test_a_batch_stores_every_call_in_order_with_the_batch_context(
    http: httpx.AsyncClient, shop: dict[str, str], database_url: str
) -> None:
    calls = [
        {"type": "track", **track("Opened", context={"locale": "fr-FR"})},
        {"type": "identify", "messageId": "idn-1", "userId": "bob", "traits": {"age": 31}},
        {"type": "track", **track("Closed", user="bob")},
    ]
    body = {"batch": calls, "context": {"locale": "de-DE", "app": {"version": "2.1"}}}
    answer = await http.post("/v1/batch", json=body, headers=shop)
    assert answer.status_code == 200, answer.text
    statuses = [r["status"] for r in answer.json()["results"]]
    assert statuses == ["accepted"] * 3
    opened, identified, closed = stored_events(database_url)
    assert isinstance(opened, EventTracked) and isinstance(closed, EventTracked)
    assert opened.context == {"locale": "fr-FR", "app_version": "2.1"}
    assert closed.context == {"locale": "de-DE", "app_version": "2.1"}
    assert isinstance(identified, UserIdentified) and identified.traits == {"age": 31.0}


async def test_an_event_with_both_ids_links_the_anonymous_id_to_the_user(
    http: httpx.AsyncClient, shop: dict[str, str], database_url: str
) -> None:
    call = track(anonymousId="device-9")
    answer = await http.post("/v1/track", json=call, headers=shop)
    assert answer.json()["results"][0]["status"] == "accepted"
    event, link = stored_events(database_url)
    assert isinstance(event, EventTracked) and event.event_id == call["messageId"]
    assert isinstance(link, UserIdentified)
    assert (link.user_id, link.anonymous_id) == ("alice", "device-9")


async def test_a_gzip_body_is_read(
    http: httpx.AsyncClient, shop: dict[str, str], database_url: str
) -> None:
    body = gzip.compress(orjson.dumps({"batch": [{"type": "track", **track()}]}))
    headers = {**shop, "Content-Encoding": "gzip"}
    answer = await http.post("/v1/batch", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert len(stored_events(database_url)) == 1


async def test_health_turns_to_draining_on_stop_while_calls_are_still_taken(
    ingest: IngestApp, http: httpx.AsyncClient, shop: dict[str, str], database_url: str
) -> None:
    assert (await http.get("/healthz")).json() == {"status": "serving"}
    assert ingest.http is not None
    stopping = asyncio.create_task(ingest.http.stop(grace=5, drain=30))
    await asyncio.sleep(0)
    health = await http.get("/healthz")
    assert health.status_code == 503 and health.json() == {"status": "draining"}
    answer = await http.post("/v1/track", json=track(), headers=shop)
    assert answer.status_code == 200
    assert len(stored_events(database_url)) == 1
    stopping.cancel()
    ingest.http.api.serving = True
