"""Segment files: one segment or a list, checked before anything is sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.cli.segment_files import SegmentFileError, load_segments


def test_a_single_segment_file_is_one_spec(tmp_path: Path) -> None:
    path = tmp_path / "one.yaml"
    path.write_text(
        "segment_id: carts\ncondition:\n"
        "  inaction: {did: Added to Cart, not_did: Order Completed, within: 24h}\n"
    )
    (spec,) = load_segments(path)
    assert spec.segment_id == "carts" and spec.display_name == "carts"
    assert spec.condition["inaction"]["within"] == "24h"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("segment_id: a\ncondition: {events: {name: X, window: 3x}}\n", "segment.condition"),
        ("segment_id: a\ncolour: red\ncondition: {lifecycle: [new]}\n", "segment.colour: unknown"),
        ("segment_id: a\ndescription: [1]\ncondition: {lifecycle: [new]}\n", "must be text"),
        ("- 1\n- 2\n", "expected a segment (segment_id, condition)"),
        ("segments: []\n", "expected a list under `segments:` (not empty)"),
    ],
)
def test_problems_name_the_file_and_the_field(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SegmentFileError) as caught:
        load_segments(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert expected in str(caught.value)


def test_an_unreadable_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SegmentFileError, match="cannot read"):
        load_segments(tmp_path / "missing.yaml")
