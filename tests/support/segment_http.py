"""Segment calls and write-key headers for tests of ingest's HTTP tracking API."""

from __future__ import annotations

import base64
from typing import Any

from tests.support.ingest import unique_id


def basic(key: str, password: str = "") -> str:
    """The Authorization header Segment's clients send: the write key as Basic user."""
    return "Basic " + base64.b64encode(f"{key}:{password}".encode()).decode()


def track(event: str = "Added to Cart", user: str = "alice", **fields: Any) -> dict[str, Any]:
    """A Segment track call with a fresh messageId (unless given)."""
    return {"messageId": unique_id("msg"), "userId": user, "event": event, **fields}
