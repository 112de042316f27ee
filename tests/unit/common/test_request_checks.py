"""The common request checks: the text rule, timestamp and duration ranges, page tokens,
and statuses that always fit in gRPC trailers."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from cohortflow.campaigns.v1 import campaigns_pb2, inbox_pb2
from cohortflow.segments.v1 import segments_pb2
from google.rpc import error_details_pb2, status_pb2

from services.common.grpc.errors import (
    MAX_VIOLATIONS,
    FieldViolation,
    invalid_argument,
    malformed_request,
    segment_not_found,
)
from services.common.grpc.paging import BadPageToken, decode_token, encode_token
from services.common.grpc.request_check import request_problems
from services.common.text import is_clean_text, name_problem, text_problem


@pytest.mark.parametrize(
    "text", ["\x00", "a\x01", "\x08", "\x0b", "\x0c", "\x1b[2J", "\x1f", "\x7f", "\x80", "\x9b"]
)
def test_control_characters_are_refused_in_text_and_names(text: str) -> None:
    assert text_problem(text) is not None
    assert name_problem(text) is not None
    assert not is_clean_text(text)


@pytest.mark.parametrize("text", ["tab\there", "line\nbreak", "cr\r", ""])
def test_free_text_keeps_tab_and_line_breaks_names_do_not(text: str) -> None:
    assert text_problem(text) is None
    assert (name_problem(text) is None) == (text == "")


@pytest.mark.parametrize("text", ["Grüße", "日本語", "🎉", "\u00a0nbsp", "a\u200db"])
def test_printable_unicode_is_fine(text: str) -> None:
    assert text_problem(text) is None
    assert name_problem(text) is None


def test_the_description_names_the_character_and_where() -> None:
    assert text_problem("ab\x1b[31m") == (
        "contains U+001B (ESC) at character 2; control characters other than tab,"
        " line feed and carriage return are not allowed"
    )


def test_every_string_of_a_request_is_checked_with_its_path() -> None:
    request = segments_pb2.CreateSegmentRequest(segment_id="ok")
    deep = request.segment.condition.all.conditions.add().any.conditions.add()
    deep.trait.key = "plan\x00"
    deep.trait.values.add(string_value="\x1b[1m")
    request.segment.condition.all.conditions.add().geo.cities.append("Ber\x7flin")
    assert [p.field for p in request_problems(request)] == [
        "segment.condition.all.conditions[0].any.conditions[0].trait.key",
        "segment.condition.all.conditions[0].any.conditions[0].trait.values[0].string_value",
        "segment.condition.all.conditions[1].geo.cities[0]",
    ]


def test_map_keys_and_values_are_checked() -> None:
    request = campaigns_pb2.CreateCampaignRequest()
    variant = request.campaign.variants.add(name="a")
    variant.template.data["ke\ty"] = "fine"
    variant.template.data["k"] = "va\x00lue"
    fields = sorted(p.field for p in request_problems(request))
    assert fields == [
        'campaign.variants[0].template.data["k"]',
        'campaign.variants[0].template.data["ke\\ty"]',
    ]


@pytest.mark.parametrize(
    ("seconds", "nanos", "field"),
    [
        (-62_135_596_801, 0, "as_of_time"),
        (253_402_300_800, 0, "as_of_time"),
        (2**62, 0, "as_of_time"),
        (0, -1, "as_of_time.nanos"),
        (0, 1_000_000_000, "as_of_time.nanos"),
    ],
)
def test_timestamps_out_of_range_are_named(seconds: int, nanos: int, field: str) -> None:
    request = segments_pb2.ListSegmentMembersRequest(segment_id="s")
    request.as_of_time.seconds = seconds
    request.as_of_time.nanos = nanos
    assert [p.field for p in request_problems(request)] == [field]


def test_timestamps_at_the_limits_pass() -> None:
    for seconds in (-62_135_596_800, 253_402_300_799):
        request = segments_pb2.CheckMembershipRequest(segment_id="s", user_id="u")
        request.as_of_time.seconds = seconds
        request.as_of_time.nanos = 999_999_999
        assert request_problems(request) == []


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [(315_576_000_001, 0), (-315_576_000_001, 0), (1, -1), (-1, 5), (0, 10**9)],
)
def test_durations_out_of_range_are_named(seconds: int, nanos: int) -> None:
    request = campaigns_pb2.CreateCampaignRequest()
    request.campaign.delay.seconds = seconds
    request.campaign.delay.nanos = nanos
    assert [p.field.removesuffix(".nanos") for p in request_problems(request)] == ["campaign.delay"]


def test_problems_stop_after_the_cap() -> None:
    request = inbox_pb2.MarkReadRequest(user_id="u", message_ids=["\x00"] * 1000)
    assert len(request_problems(request)) == MAX_VIOLATIONS + 1


def _token(cursor: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(cursor)).decode().rstrip("=")


def test_our_tokens_round_trip_with_their_types() -> None:
    assert decode_token(encode_token({"after": 42}), {"after": int}) == {"after": 42}
    assert decode_token(encode_token({"after": "u-1"}), {"after": str}) == {"after": "u-1"}
    assert decode_token("", {"after": int}) is None


@pytest.mark.parametrize(
    "token",
    [
        _token({"after": "x"}),
        _token({"after": 2**63}),
        _token({"after": -1}),
        _token({"after": True}),
        _token({"after": 1.5}),
        _token({"after": None}),
        _token({"after": [1]}),
        _token({"after": 1, "extra": 2}),
        _token({"offset": 1}),
        _token([1]),
        "not base64 !!",
        "e30",  # {}
        "A" * 5000,
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_forged_and_foreign_tokens_are_refused(token: str) -> None:
    with pytest.raises(BadPageToken):
        decode_token(token, {"after": int})


@pytest.mark.parametrize("after", ["a\x00b", "x" * 2000, "\x1b[1m"])
def test_string_cursors_with_control_characters_or_huge_are_refused(after: str) -> None:
    with pytest.raises(BadPageToken):
        decode_token(_token({"after": after}), {"after": str})


def _details(status: object) -> tuple[str, list[Any]]:
    trailing = dict(status.trailing_metadata)  # type: ignore[attr-defined]
    parsed = status_pb2.Status.FromString(trailing["grpc-status-details-bin"])
    return parsed.message, list(parsed.details)


def test_a_huge_bad_request_is_clipped_to_fit_in_trailers() -> None:
    problems = [FieldViolation("x" * 10_000, "🎉" * 10_000) for _ in range(500)]
    status = invalid_argument(problems)
    blob = dict(status.trailing_metadata)["grpc-status-details-bin"]
    assert len(blob) * 4 / 3 + len(status.details.encode()) * 3 < 8192
    message, _ = _details(status)
    assert message.endswith(f"(and 499 more); the first {MAX_VIOLATIONS} are listed")


def test_malformed_and_not_found_carry_a_reason_and_what() -> None:
    message, details = _details(malformed_request("cohortflow.x.v1.R"))
    assert message.startswith("request: not a valid cohortflow.x.v1.R protobuf message")
    info = error_details_pb2.ErrorInfo()
    details[-1].Unpack(info)
    assert (info.reason, info.domain) == ("MALFORMED_REQUEST", "cohortflow.dev")
    message, details = _details(segment_not_found("s" * 5000))
    resource = error_details_pb2.ResourceInfo()
    details[0].Unpack(resource)
    assert resource.resource_type == "segment"
    details[1].Unpack(info)
    assert info.reason == "SEGMENT_NOT_FOUND"
    assert len(message.encode()) <= 400
