"""Random Segment-shaped bodies: never a 5xx, every refusal names fields, and exactly the
calls answered `accepted` are stored."""

from __future__ import annotations

import json
import random
from typing import Any

import httpx

from tests.support.eventlog import stored_events

SEED = 14
TEXTS = ["", "a", "Added to Cart", "x" * 2000, "\x00", "a\x1bb", "é😀", " lead", "$x",
         "2026-01-02T03:04:05Z", "1999-01-01", "Europe/Berlin", "Mars/Base", "de-DE", "DE",
         "a@b.co", "+4915112345678", "Plan Type", "a.b"]  # fmt: skip
NUMBERS = [0, 1, -1, 2**64, 1.5, -1e308, 1e308, float("inf"), float("nan"), 91, 181]
FIELDS = ["messageId", "userId", "anonymousId", "event", "properties", "traits", "context",
          "timestamp", "originalTimestamp", "previousId", "groupId", "name",
          "integrations"]  # fmt: skip
TYPES = ["track", "identify", "page", "screen", "alias", "group", "shout", 7]


def value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.choice(["null", "bool", "number", "text", "list", "object"][: 4 if depth > 3 else 6])
    if kind == "null":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "number":
        return rng.choice(NUMBERS)
    if kind == "text":
        return rng.choice(TEXTS)
    if kind == "list":
        return [value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(TEXTS): value(rng, depth + 1) for _ in range(rng.randrange(5))}


def call(rng: random.Random, index: int) -> dict[str, Any]:
    out: dict[str, Any] = {"type": rng.choice(TYPES), "userId": f"u{index % 7}"}
    if rng.random() < 0.8:
        out["messageId"] = f"m{index}"
    for field in rng.sample(FIELDS, rng.randrange(1, 6)):
        out[field] = value(rng)
    if rng.random() < 0.5:
        out["event"] = "Opened"
    return out


async def test_random_calls_are_answered_and_stored_exactly_as_said(
    http: httpx.AsyncClient, shop: dict[str, str], database_url: str
) -> None:
    rng = random.Random(SEED)
    accepted: set[str] = set()
    refused = 0
    for request in range(60):
        calls = [call(rng, request * 20 + i) for i in range(20)]
        # json.dumps writes NaN and Infinity, as Python clients send them.
        body = json.dumps({"batch": calls}).encode()
        answer = await http.post("/v1/batch", content=body, headers=shop)
        assert answer.status_code in (200, 400), answer.text
        payload = answer.json()
        if answer.status_code == 400:
            assert payload["fields"] and all(f["field"] and f["message"] for f in payload["fields"])
        for result in payload["results"]:
            if result["status"] == "rejected":
                refused += 1
                assert result["fields"]
            else:
                accepted.add(result["messageId"])
    stored = {e.event_id for e in stored_events(database_url) if not e.event_id.startswith("link-")}
    assert stored == accepted
    assert accepted and refused  # the seed exercises both
