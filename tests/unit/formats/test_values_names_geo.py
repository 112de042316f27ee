"""The shared rules: flattened values, valid keys, event names, country and language codes."""

from __future__ import annotations

import pytest

from services.common.formats import FieldError
from services.common.formats.geo import country_code, language_tag
from services.common.formats.names import event_name
from services.common.formats.values import MAX_DEPTH, cohortflow_key, flatten


def test_nested_objects_become_dotted_keys_and_nulls_are_left_out() -> None:
    values = flatten({"address": {"city": "Berlin", "geo": {"lat": 52.5}}, "gone": None}, "traits")
    assert {k: v.WhichOneof("kind") for k, v in values.items()} == {
        "address.city": "string_value",
        "address.geo.lat": "number_value",
    }


def test_lists_of_one_kind_stay_lists_and_any_other_list_becomes_texts() -> None:
    values = flatten(
        {"tags": ["a", None, "b"], "n": [1, 2.5], "mixed": [1, "a", True], "objs": [{"a": 1}]},
        "properties",
    )
    assert [v.string_value for v in values["tags"].list_value.values] == ["a", "b"]
    assert [v.number_value for v in values["n"].list_value.values] == [1.0, 2.5]
    assert [v.string_value for v in values["mixed"].list_value.values] == ["1", "a", "true"]
    assert [v.string_value for v in values["objs"].list_value.values] == ['{"a":1}']


@pytest.mark.parametrize(
    ("key", "ours"),
    [
        ("plan", "plan"),
        ("Plan Type", "Plan_Type"),
        ("$city", "$city"),
        ("1st visit", "x_1st_visit"),
        ("[Amplitude] Page URL", "Amplitude_Page_URL"),
        ("Price ($)", "Price_$"),
        ("a  b", "a_b"),
        ("_internal", "x__internal"),
        ("", "x_"),
    ],
)
def test_keys_keep_letters_digits_and_underscore_dot_dollar_dash(key: str, ours: str) -> None:
    assert cohortflow_key(key) == ours


def test_two_keys_that_become_one_are_an_error_naming_the_second() -> None:
    with pytest.raises(FieldError) as error:
        flatten({"Plan Type": "a", "Plan_Type": "b"}, "properties")
    assert error.value.field == "properties.Plan_Type"
    assert 'properties["Plan Type"]' in error.value.reason


def test_objects_nested_too_deep_are_an_error_at_the_level_that_is_too_deep() -> None:
    deep: dict[str, object] = {"leaf": 1}
    for _ in range(MAX_DEPTH):
        deep = {"k": deep}
    with pytest.raises(FieldError) as error:
        flatten(deep, "properties")
    assert error.value.field == "properties" + ".k" * MAX_DEPTH
    assert f"more than {MAX_DEPTH} deep" in error.value.reason


def test_nul_characters_in_keys_and_values_are_errors_naming_them() -> None:
    with pytest.raises(FieldError) as in_value:
        flatten({"a": {"b": ["x", "y\x00"]}}, "properties")
    assert in_value.value.field == "properties.a.b[1]"
    with pytest.raises(FieldError) as in_key:
        flatten({"a\x00": 1}, "properties")
    assert in_key.value.field == 'properties["a\\u0000"]'


@pytest.mark.parametrize(
    ("raw", "ours"),
    [
        ("Order Completed", "Order Completed"),
        ("[Amplitude] Page Viewed", "Amplitude Page Viewed"),
        ("$ae_session", "ae_session"),
        ("Clicked 'Buy'!", "Clicked 'Buy'"),
        ("Café besucht", "Cafe besucht"),
        ("  spaced\tout  ", "spaced out"),
    ],
)
def test_event_names_keep_what_cohortflow_allows(raw: str, ours: str) -> None:
    assert event_name(raw, "event") == ours


def test_an_event_name_with_nothing_left_is_an_error() -> None:
    with pytest.raises(FieldError) as error:
        event_name("注文", "event_type")
    assert error.value.field == "event_type"


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("DE", "DE"),
        ("de", "DE"),
        ("USA", "US"),
        ("United States", "US"),
        ("germany", "DE"),
        ("Turkey", "TR"),
        ("Russia", "RU"),
        ("Reunion", "RE"),
        ("The Netherlands", "NL"),
        ("Europe", ""),
        ("", ""),
        ("x" * 5000, ""),
    ],
)
def test_country_names_and_codes_become_alpha_2_codes(name: str, code: str) -> None:
    assert country_code(name) == code


@pytest.mark.parametrize(
    ("name", "tag"),
    [
        ("English", "en"),
        ("German", "de"),
        ("Greek", "el"),
        ("en-US", "en-US"),
        ("pt_BR", "pt-BR"),
        ("", ""),
    ],
)
def test_languages_become_bcp47_tags(name: str, tag: str) -> None:
    assert language_tag(name) == tag
