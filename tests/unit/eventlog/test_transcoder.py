"""The log's transcoder: fast for plain payloads, faithful for library types."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from eventsourcing.application import Application

from services.eventlog.transcoder import FastJSONTranscoder


def transcoder() -> FastJSONTranscoder:
    t = FastJSONTranscoder()
    Application.register_transcodings(Application, t)  # type: ignore[arg-type]
    return t


def test_plain_payload_round_trips() -> None:
    t = transcoder()
    state = {"name": "Opened", "n": 1.5, "b": False, "l": ["a"], "m": {"x": 1}}
    assert t.decode(t.encode(state)) == state


def test_datetimes_uuids_and_decimals_keep_their_types() -> None:
    t = transcoder()
    moment = datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC)
    ident = uuid.uuid4()
    state = {"timestamp": moment, "ref": {"id": ident}, "price": Decimal("1.10")}
    data = t.encode(state)
    assert b'"_type_"' in data
    back = t.decode(data)
    assert back["timestamp"] == moment
    assert back["price"] == Decimal("1.10")
    assert str(back["ref"]["id"]) == str(ident)
