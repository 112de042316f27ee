"""SegmentService names the real problem with an id, a name or a description."""

from __future__ import annotations

import pytest
from cohortflow.segments.v1 import segments_pb2

from services.projector.grpc.segment_requests import create_id_problems, segment_id_problems
from services.projector.service_layer.segment_checks import Draft, text_problems


def _create(segment_id: str, inner: str = "") -> segments_pb2.CreateSegmentRequest:
    return segments_pb2.CreateSegmentRequest(
        segment_id=segment_id, segment=segments_pb2.Segment(segment_id=inner)
    )


def test_an_id_only_in_the_segment_is_called_misplaced_not_malformed() -> None:
    (problem,) = create_id_problems(_create("", inner="vip"))
    assert problem.field == "segment_id"
    assert problem.description.startswith("is required: put the new segment's id here")
    assert "segment.segment_id ('vip') is not read on create" in problem.description


def test_a_missing_id_is_required_not_badly_formed() -> None:
    (problem,) = create_id_problems(_create(""))
    assert (problem.field, problem.description.split(" (")[0]) == ("segment_id", "is required")


def test_a_repeated_id_is_fine_a_different_one_is_named() -> None:
    assert create_id_problems(_create("vip", inner="vip")) == []
    (problem,) = create_id_problems(_create("vip", inner="gold"))
    assert problem.field == "segment.segment_id"


@pytest.mark.parametrize("bad", ["VIP", "-vip", "vip-", "a" * 64, "v i p", "vip\x00"])
def test_a_badly_formed_id_is_named_at_the_field_the_client_used(bad: str) -> None:
    (problem,) = segment_id_problems(bad, "segment.segment_id")
    assert problem.field == "segment.segment_id"
    assert problem.description.startswith("must be lowercase letters")


@pytest.mark.parametrize(
    ("display_name", "description", "fields"),
    [
        ("Big\x00spenders", "", ["segment.display_name"]),
        ("Tab\there", "", ["segment.display_name"]),
        ("\x1b[31mred", "", ["segment.display_name"]),
        ("ok", "multi\nline\ttext", []),
        ("ok", "nul\x00", ["segment.description"]),
        ("ok", "\x9b1m", ["segment.description"]),
        ("x" * 201, "y" * 2001, ["segment.display_name", "segment.description"]),
        ("Grüne 🎉 Kunden", "", []),
    ],
)
def test_names_take_no_control_characters_descriptions_keep_line_breaks(
    display_name: str, description: str, fields: list[str]
) -> None:
    draft = Draft("vip", display_name, description, {"segment": "other"})
    assert [p.field for p in text_problems(draft)] == fields
