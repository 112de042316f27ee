"""Typed values from text and JSON: what the CLI sends for `--prop`, CSV cells and JSONL."""

from __future__ import annotations

import pytest

from services.cli.values import BadValue, assignment, from_json, infer, of_kind, parse_time


def kind(value: object) -> str:
    return value.WhichOneof("kind")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", "bool_value"),
        ("false", "bool_value"),
        ("42", "number_value"),
        ("-2.5", "number_value"),
        ("1e3", "number_value"),
        ("2024-05-01T10:00:00Z", "timestamp_value"),
        ("2024-05-01 10:00:00+02:00", "timestamp_value"),
        ("True", "string_value"),
        ("007x", "string_value"),
        ("2024-13-45T99:00", "string_value"),
        ("", "string_value"),
        ("nan", "string_value"),
    ],
)
def test_text_is_typed_by_inference(text: str, expected: str) -> None:
    assert kind(infer(text)) == expected


def test_inferred_values_keep_their_content() -> None:
    assert infer("12.50").number_value == 12.5
    assert infer("true").bool_value is True
    assert infer("2024-05-01T10:00:00Z").timestamp_value.seconds == 1714557600
    assert infer("hello world").string_value == "hello world"


def test_a_time_without_offset_is_utc() -> None:
    assert parse_time("2024-05-01T10:00:00") == parse_time("2024-05-01T10:00:00Z")


def test_a_bad_time_says_what_is_expected() -> None:
    with pytest.raises(BadValue, match="not an ISO-8601 date-time"):
        parse_time("yesterday")


def test_explicit_kinds_override_inference() -> None:
    assert of_kind("007", "string").string_value == "007"
    assert of_kind("7", "number").number_value == 7.0
    assert of_kind("TRUE", "bool").bool_value is True
    assert of_kind('["a", "b"]', "json").list_value.values[1].string_value == "b"


@pytest.mark.parametrize(
    ("text", "kind_name", "message"),
    [
        ("abc", "number", "not a number"),
        ("inf", "number", "finite"),
        ("yes", "bool", "not true or false"),
        ("soon", "time", "ISO-8601"),
        ("[1,", "json", "not valid JSON"),
        ("x", "color", "unknown kind"),
    ],
)
def test_explicit_kinds_refuse_what_does_not_fit(text: str, kind_name: str, message: str) -> None:
    with pytest.raises(BadValue, match=message):
        of_kind(text, kind_name)


def test_json_values_map_to_value_kinds() -> None:
    assert kind(from_json(3)) == "number_value"
    assert kind(from_json(True)) == "bool_value"
    assert kind(from_json("x")) == "string_value"
    assert kind(from_json({"$time": "2024-05-01T10:00:00Z"})) == "timestamp_value"
    assert [v.number_value for v in from_json([1, 2]).list_value.values] == [1.0, 2.0]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([[1]], "lists cannot contain lists"),
        ({"a": 1}, "objects are not values"),
        (None, "null is not a value"),
        ({"$time": 5}, "ISO-8601 string"),
    ],
)
def test_json_values_that_cannot_be_sent_are_explained(value: object, message: str) -> None:
    with pytest.raises(BadValue, match=message):
        from_json(value)


def test_command_line_assignments() -> None:
    key, value = assignment("price=9.99")
    assert (key, value.number_value) == ("price", 9.99)
    key, value = assignment('code:="007"')
    assert (key, value.string_value) == ("code", "007")
    key, value = assignment("note=a=b")
    assert (key, value.string_value) == ("note", "a=b")
    with pytest.raises(BadValue, match="not key=value"):
        assignment("price")
    with pytest.raises(BadValue, match="not key=value"):
        assignment("=5")
