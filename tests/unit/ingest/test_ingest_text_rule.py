"""Ingest refuses NUL and control characters in every string it would store, naming the
field; found from the request descriptors, so a new field cannot be forgotten."""

from __future__ import annotations

import json
import re

import pytest
from cohortflow.ingest.v1 import ingest_pb2
from cohortflow.types.v1 import types_pb2
from google.protobuf import timestamp_pb2

from services.ingest.domain.model import Limits
from services.ingest.domain.validation import check_event, check_identify
from services.ingest.grpc import convert
from tests.support.protowalk import Slot, string_slots

NOW = 1_790_000_000_000_000
LIMITS = Limits()
HOSTILE = ["a\x00b", "\x1b[31mred", "del\x7f", "\x9b31m", "bell\x07", "\x00"]


def _time(us: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromMicroseconds(us)
    return ts


def _values() -> dict[str, types_pb2.Value]:
    return {
        "sku": types_pb2.Value(string_value="A-1"),
        "tags": types_pb2.Value(
            list_value=types_pb2.ValueList(
                values=[types_pb2.Value(string_value="x"), types_pb2.Value(string_value="y")]
            )
        ),
    }


TRACK = ingest_pb2.TrackRequest(
    event=ingest_pb2.Event(
        event_id="evt-1",
        user_id="alice",
        anonymous_id="anon-1",
        name="Added to Cart",
        event_time=_time(NOW - 3_600_000_000),
        properties=_values(),
        context=ingest_pb2.Context(
            platform="ios",
            os="iOS 18",
            app_version="4.2.0",
            locale="de-DE",
            timezone="Europe/Berlin",
            country="DE",
            city="Berlin",
        ),
    )
)
IDENTIFY = ingest_pb2.IdentifyRequest(
    event_id="idn-1",
    user_id="alice",
    anonymous_id="anon-1",
    traits=_values(),
    contact=ingest_pb2.Contact(email="a@example.com", phone="+4915112345678", push_token="tok"),
    timezone="Europe/Berlin",
    location=ingest_pb2.Location(country="DE", city="Berlin"),
)


def _violation_path(slot: Slot, text: str, prefix: str) -> str:
    """The path validation uses for a slot: `properties["tags"][0]`, `contact.email`."""
    path = slot.path.removeprefix(prefix)
    if path.endswith("(key)"):
        head = path[: path.rindex("[")]
        return f"{head}[{json.dumps(text, ensure_ascii=False)}]"
    path = path.replace(".string_value", "")
    return re.sub(r"\.list_value\.values\[(\d+)\]", r"[\1]", path)


def _track_fields(request: ingest_pb2.TrackRequest) -> list[str]:
    return [v.field for v in check_event(convert.event_draft(request.event), NOW, LIMITS)]


def _identify_fields(request: ingest_pb2.IdentifyRequest) -> list[str]:
    return [v.field for v in check_identify(convert.identify_draft(request), NOW, LIMITS)]


def test_the_complete_requests_are_accepted() -> None:
    assert _track_fields(TRACK) == []
    assert _identify_fields(IDENTIFY) == []


@pytest.mark.parametrize("slot", string_slots(TRACK), ids=lambda s: s.path)
@pytest.mark.parametrize("text", HOSTILE, ids=repr)
def test_track_refuses_control_characters_in_every_string(slot: Slot, text: str) -> None:
    fields = _track_fields(slot.rewritten(TRACK, text))  # type: ignore[arg-type]
    assert _violation_path(slot, text, "event.") in fields


@pytest.mark.parametrize("slot", string_slots(IDENTIFY), ids=lambda s: s.path)
@pytest.mark.parametrize("text", HOSTILE, ids=repr)
def test_identify_refuses_control_characters_in_every_string(slot: Slot, text: str) -> None:
    fields = _identify_fields(slot.rewritten(IDENTIFY, text))  # type: ignore[arg-type]
    assert _violation_path(slot, text, "") in fields


@pytest.mark.parametrize("text", ["two\tcolumns", "line\nbreak", "crlf\r\n", "Grüße 🎉"])
def test_values_keep_tab_line_breaks_and_any_printable_unicode(text: str) -> None:
    request = ingest_pb2.TrackRequest()
    request.CopyFrom(TRACK)
    request.event.properties["note"].string_value = text
    request.event.properties["list"].list_value.values.add(string_value=text)
    assert _track_fields(request) == []


@pytest.mark.parametrize("field", ["user_id", "anonymous_id"])
@pytest.mark.parametrize("text", ["a\tb", "a\nb", "a\x00b"])
def test_ids_take_no_control_characters_at_all(field: str, text: str) -> None:
    request = ingest_pb2.TrackRequest()
    request.CopyFrom(TRACK)
    setattr(request.event, field, text)
    assert field in _track_fields(request)


def test_a_nul_is_named_in_the_description() -> None:
    request = ingest_pb2.TrackRequest()
    request.CopyFrom(TRACK)
    request.event.properties["sku"].string_value = "A\x00"
    (violation,) = check_event(convert.event_draft(request.event), NOW, LIMITS)
    assert violation.field == 'properties["sku"]'
    assert "U+0000 (NUL) at character 1" in violation.description
