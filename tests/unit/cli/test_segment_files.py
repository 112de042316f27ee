"""Segment files: one segment or a list, checked before anything is sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


# ---- hostile files -----------------------------------------------------------------------

ALIAS_BOMB = "\n".join(
    [
        "segment_id: bomb",
        "a0: &a0 [x, x, x, x, x, x, x, x, x, x]",
        *(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)),
        "condition: {any: *a6}",
    ]
)


def refusal(tmp_path: Path, text: str | bytes) -> str:
    path = tmp_path / "hostile.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(SegmentFileError) as caught:
        load_segments(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    return message[len(f"{path}: ") :]


def test_an_alias_bomb_is_refused_at_its_line_before_it_is_expanded(tmp_path: Path) -> None:
    # 10^7 nodes in eight lines: refused where the count passes the limit, on line 6.
    assert refusal(tmp_path, ALIAS_BOMB) == (
        "line 6: more than 100000 YAML nodes (aliases count as the nodes they stand for)"
    )


def test_aliases_within_the_limits_are_read(tmp_path: Path) -> None:
    path = tmp_path / "aliases.yaml"
    path.write_text(
        "segments:\n"
        "  - segment_id: a\n    condition: &pro {trait: {key: plan, op: '=', value: pro}}\n"
        "  - segment_id: b\n    condition: {all: [*pro, {lifecycle: [new]}]}\n"
    )
    a, b = load_segments(path)
    assert b.condition["all"][0] == a.condition


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("segment_id: a\ncondition: " + "[" * 100 + "]" * 100 + "\n", "line 2: nests more"),
        ("segment_id: a\ncondition: " + "{all: [" * 50 + "]}" * 50 + "\n", "line 2: nests more"),
        ("segment_id: a\ncondition: " + "[" * 10_000 + "]" * 10_000 + "\n", "line 2"),
        ("segment_id: a\ncondition:\n" + "".join(" " * i + "-\n" for i in range(200)),
         "line 66: nests more than 64 deep"),
        ("segment_id: a\nx: &x [a, *x]\n", "line 2: alias *x is inside the node it names"),
        ("segment_id: a\ncondition: {trait: {key: a, op: '=', value: " + "9" * 5000 + "}}\n",
         "line 2"),
        ("segment_id: a\ncondition: {first_seen: {before: 2026-13-45}}\n", "line 2"),
        ("segment_id: a\ncondition: {lifecycle: [new]}\n\x00\n", "line 3"),
        (b"segment_id: a\ncondition: {lifecycle: [new]}\n# \xff\xfe\n", "line 3: not UTF-8"),
        ("segment_id: a\ncondition: {name: x}\n", "unknown condition kind 'name'; one of all,"),
        ("segment_id: a\ncondition: {_setattr__: x}\n", "segment.condition: unknown condition"),
        ("segment_id: a\ncondition: {scalar: other}\n", "segment.condition: unknown condition"),
        ("segment_id: a\ncondition: {trait: {key: a, op: in, values: ["
         + ", ".join(str(i) for i in range(5_000)) + "]}}\n",
         "segment.condition.trait.values: has 5000 items; at most 1000"),
        ("segment_id: a\ncondition: {trait: {key: a, op: in, values: ["
         + ", ".join(str(i) for i in range(100_000)) + "]}}\n",
         "line 2: more than 100000 YAML nodes"),
        ("segment_id: a\n" + "#" * 1_100_000 + "\n", "larger than 1048576 bytes"),
        ("segment_id: a\n7: x\ncondition: {lifecycle: [new]}\n", "segment.7: unknown field"),
        ("segments:\n" + "- {segment_id: a}\n" * 1_001, "segments: at most 1000 in one file"),
    ],
)  # fmt: skip
def test_hostile_files_are_refused_with_the_line_or_the_node(
    tmp_path: Path, text: str | bytes, expected: str
) -> None:
    assert expected in refusal(tmp_path, text)


def test_a_long_chain_of_references_is_ordered_without_recursion(tmp_path: Path) -> None:
    path = tmp_path / "chain.yaml"
    chain = "".join(
        f"  - {{segment_id: s{i}, condition: {{segment: s{i + 1}}}}}\n" for i in range(999)
    )
    path.write_text(
        f"segments:\n{chain}  - {{segment_id: s999, condition: {{lifecycle: [new]}}}}\n"
    )
    specs = load_segments(path)
    assert [s.segment_id for s in specs][:2] == ["s999", "s998"]


YAMLISH = st.text(alphabet=" \n-:[]{},&*!'\"#|>x1aé\x00\t", max_size=200)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.binary(max_size=300) | YAMLISH.map(str.encode))
def test_random_bytes_are_a_segment_file_error_or_segments(
    tmp_path_factory: Any, raw: bytes
) -> None:
    path = tmp_path_factory.getbasetemp() / "random.yaml"
    path.write_bytes(b"segment_id: a\ncondition: " + raw)
    message = f"{path}: "
    try:
        load_segments(path)
    except SegmentFileError as error:
        message = str(error)
    assert message.startswith(f"{path}: ")
