"""Hostile objects for every format: a FieldError naming the field, never another failure.

Arbitrary JSON in every field the mappings read (hypothesis), NUL characters in every text,
nesting far deeper than anything real, and sizes far beyond any export line.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.formats import CONVERTERS, Converted, FieldError

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = {
    "segment": [
        "type",
        "messageId",
        "userId",
        "anonymousId",
        "previousId",
        "groupId",
        "event",
        "name",
        "category",
        "timestamp",
        "originalTimestamp",
        "sentAt",
        "receivedAt",
        "properties",
        "traits",
        "context",
    ],
    "mixpanel": ["event", "properties"],
    "amplitude": [
        "event_type",
        "user_id",
        "device_id",
        "event_time",
        "client_event_time",
        "time",
        "$insert_id",
        "insert_id",
        "uuid",
        "event_properties",
        "user_properties",
        "country",
        "city",
        "location_lat",
        "location_lng",
        "platform",
        "os_name",
        "os_version",
        "version_name",
        "language",
    ],
}
NESTED = {
    "segment": {
        "context": ["location", "device", "os", "app", "library", "campaign", "locale", "timezone"],
        "traits": ["email", "phone", "address"],
    },
    "mixpanel": {
        "properties": [
            "time",
            "distinct_id",
            "$insert_id",
            "$device_id",
            "$user_id",
            "$city",
            "mp_country_code",
            "$latitude",
            "$longitude",
            "$os",
            "$os_version",
            "mp_lib",
            "$app_version_string",
            "$anon_id",
            "$identified_id",
            "alias",
        ]
    },
    "amplitude": {"user_properties": ["$set", "$setOnce", "email"]},
}
KINDS = {
    "segment": ("type", st.sampled_from(["track", "page", "screen", "identify", "alias", "group"])),
    "mixpanel": ("event", st.sampled_from(["E", "$identify", "$create_alias", "$merge"])),
    "amplitude": ("event_type", st.sampled_from(["E", "$identify", "$groupidentify"])),
}


def _objects(name: str) -> st.SearchStrategy[dict[str, Any]]:
    nested = {
        key: st.fixed_dictionaries({}, optional={k: json_values for k in keys}) | json_values
        for key, keys in NESTED[name].items()
    }
    optional = {key: nested.get(key, json_values) for key in FIELDS[name]}
    kind_key, kinds = KINDS[name]
    optional[kind_key] = kinds | json_values
    return st.fixed_dictionaries({}, optional=optional)


def _assert_well_formed(converted: Converted) -> None:
    messages = [m for m in (converted.event, converted.link, *converted.identifies) if m]
    for message in messages:
        message.SerializeToString()  # a complete, valid message
        assert "\\000" not in str(message)  # text format shows a NUL as \000


@pytest.mark.parametrize("name", sorted(CONVERTERS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_json_in_any_field_converts_or_names_a_field(name: str, data: st.DataObject) -> None:
    source = data.draw(_objects(name))
    try:
        converted = CONVERTERS[name](source)
    except FieldError as error:
        refused: FieldError | None = error
    else:
        refused = None
        _assert_well_formed(converted)
    assert refused is None or (refused.reason and "\n" not in refused.field)


GOOD = {
    "segment": {
        "type": "identify",
        "messageId": "m",
        "userId": "u",
        "anonymousId": "a",
        "timestamp": "2026-01-01T00:00:00Z",
        "traits": {"plan": "x", "address": {"city": "c"}},
        "context": {"timezone": "UTC", "location": {"city": "c", "country": "DE"}},
    },
    "mixpanel": {
        "event": "E",
        "properties": {"time": 1, "distinct_id": "u", "$insert_id": "i", "$city": "c", "p": "x"},
    },
    "amplitude": {
        "event_type": "E",
        "user_id": "u",
        "device_id": "d",
        "uuid": "x",
        "city": "c",
        "event_properties": {"p": {"q": "x"}},
    },
}
NUL_PATHS = {
    "segment": [
        ("messageId",),
        ("userId",),
        ("anonymousId",),
        ("timestamp",),
        ("traits", "plan"),
        ("traits", "address", "city"),
        ("context", "timezone"),
        ("context", "location", "city"),
    ],
    "mixpanel": [
        ("event",),
        ("properties", "distinct_id"),
        ("properties", "$insert_id"),
        ("properties", "$city"),
        ("properties", "p"),
    ],
    "amplitude": [
        ("event_type",),
        ("user_id",),
        ("device_id",),
        ("uuid",),
        ("city",),
        ("event_properties", "p", "q"),
    ],
}


def _with(source: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = dict(source)
    if len(path) == 1:
        out[path[0]] = value
    else:
        out[path[0]] = _with(source[path[0]], path[1:], value)
    return out


@pytest.mark.parametrize(
    ("name", "path"), [(name, path) for name, paths in NUL_PATHS.items() for path in paths]
)
def test_a_nul_character_in_any_text_is_refused_naming_the_field(
    name: str, path: tuple[str, ...]
) -> None:
    CONVERTERS[name](GOOD[name])  # fine without the NUL
    with pytest.raises(FieldError) as error:
        CONVERTERS[name](_with(GOOD[name], path, "a\x00b"))
    assert error.value.field == ".".join(path)
    assert "NUL" in error.value.reason


def _deep(levels: int, leaf: Any, *, lists: bool = False) -> Any:
    value = leaf
    for _ in range(levels):
        value = [value] if lists else {"k": value}
    return value


@pytest.mark.parametrize("name", sorted(CONVERTERS))
@pytest.mark.parametrize("lists", [False, True])
def test_nesting_a_thousand_deep_is_a_field_error(name: str, lists: bool) -> None:
    container = {"segment": "traits", "mixpanel": "properties", "amplitude": "event_properties"}
    deep = _with(GOOD[name], (container[name], "deep"), _deep(1000, 1, lists=lists))
    with pytest.raises(FieldError) as error:
        CONVERTERS[name](deep)
    assert error.value.field.startswith(container[name] + ".deep")
    assert "deep" in error.value.reason


@pytest.mark.parametrize("name", sorted(CONVERTERS))
def test_huge_values_convert_and_leave_the_size_limits_to_ingest(name: str) -> None:
    container = {"segment": "traits", "mixpanel": "properties", "amplitude": "event_properties"}
    many = {f"k{i}": i for i in range(20_000)}
    huge = _with(GOOD[name], (container[name], "big"), "x" * 900_000)
    huge = _with(huge, (container[name], "many"), many)
    converted = CONVERTERS[name](huge)
    values = converted.event.properties if converted.event else converted.identifies[0].traits
    assert len(values["big"].string_value) == 900_000 and "many.k19999" in values


@pytest.mark.parametrize(
    ("name", "field", "value"),
    [
        ("segment", "timestamp", "9" * 10_000),
        ("mixpanel", "properties.time", 2**64 - 1),
        ("amplitude", "event_time", "2026-13-45 99:99:99"),
        ("amplitude", "time", -(2**63)),
    ],
)
def test_times_out_of_any_range_are_field_errors(name: str, field: str, value: Any) -> None:
    source = _with(GOOD[name], tuple(field.split(".")), value)
    with pytest.raises(FieldError) as error:
        CONVERTERS[name](source)
    assert error.value.field == field
