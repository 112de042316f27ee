"""Hostile segment definitions: size limits while reading, and nothing but DefinitionError.

The limits (`LIMITS`) hold for new definitions, from SegmentService and from files; what the
log already stores is read with `STORED_LIMITS` and parses as it always did.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.segment_wire import condition_from_dict, condition_to_dict
from services.common.segments.definition import (
    KINDS,
    LIMITS,
    STORED_LIMITS,
    DefinitionError,
    parse,
)


def nested(depth: int, leaf: Any) -> dict[str, Any]:
    data = leaf
    for _ in range(depth):
        data = {"all": [data]}
    return data


def refused(data: Any) -> list[tuple[str, str]]:
    with pytest.raises(DefinitionError) as caught:
        parse(data, limits=LIMITS)
    return caught.value.problems


def in_filter(values: list[Any]) -> dict[str, Any]:
    return {"trait": {"key": "plan", "op": "in", "values": values}}


LEAF = {"lifecycle": ["new"]}


def test_conditions_nest_at_most_12_deep_naming_the_node() -> None:
    parse(nested(12, LEAF), limits=LIMITS)
    ((path, message),) = refused(nested(13, LEAF))
    assert path == "condition" + ".all[0]" * 13
    assert message == "conditions nest at most 12 deep"


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_nesting_thousands_deep_is_refused_without_recursion(depth: int) -> None:
    deep_value = {"trait": {"key": "a", "op": "=", "value": nested(depth, 1)}}
    for data in (nested(depth, LEAF), deep_value):
        ((path, message),) = refused(data)
        assert path.startswith("condition.")
        assert "nests more than 40 deep" in message


def test_at_most_200_conditions_naming_the_first_one_too_many() -> None:
    parse({"any": [LEAF] * 199}, limits=LIMITS)
    problems = refused({"any": [LEAF] * 200})
    assert problems == [("condition.any[199]", "at most 200 conditions per segment")]


def test_a_100000_value_in_list_is_refused_before_its_values_are_read() -> None:
    problems = refused(in_filter([f"v{i}" for i in range(100_000)]))
    assert problems == [("condition.trait.values", "has 100000 items; at most 1000")]
    parse(in_filter([f"v{i}" for i in range(1_000)]), limits=LIMITS)


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"geo": {"countries": ["DE"] * 1_001}}, "condition.geo.countries"),
        ({"geo": {"cities": ["Berlin"] * 1_001}}, "condition.geo.cities"),
        ({"lifecycle": ["new"] * 1_001}, "condition.lifecycle"),
        ({"events": {"name": "x", "where": [{}] * 1_001}}, "condition.events.where"),
        ({"any": [LEAF] * 1_001}, "condition.any"),
    ],
)
def test_every_list_holds_at_most_1000_items(data: dict, path: str) -> None:
    assert refused(data) == [(path, "has 1001 items; at most 1000")]


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"trait": {"key": "k" * 1_025, "op": "exists"}}, "condition.trait.key"),
        ({"trait": {"key": "a", "op": "=", "value": "v" * 10**6}}, "condition.trait.value"),
        ({"events": {"name": "n" * 1_025}}, "condition.events.name"),
        ({"trait": {"x" * 1_025: 1}}, "condition.trait." + repr("x" * 56)[:-1] + "..."),
    ],
)
def test_strings_are_at_most_1024_characters(data: dict, path: str) -> None:
    ((where, message),) = refused(data)
    assert where.startswith(path[:40]), where
    assert "at most 1024" in message


def test_a_definition_is_at_most_64_kib_as_json() -> None:
    # 100 filters of 900 characters each: every list and string is within its limit.
    where = [{"property": f"p{i}", "op": "=", "value": "v" * 900} for i in range(100)]
    problems = refused({"events": {"name": "x", "where": where}})
    assert problems == [("condition", "is more than 65536 bytes as JSON")]


@pytest.mark.parametrize("text", ["a\x00b", "\ud800"])
def test_text_postgresql_cannot_store_is_refused(text: str) -> None:
    ((path, _message),) = refused({"trait": {"key": "a", "op": "=", "value": text}})
    assert path == "condition.trait.value"


@pytest.mark.timeout(60)
def test_shared_substructures_cost_no_more_than_the_limits() -> None:
    # What a YAML alias bomb loads to: each level shares one list ten times, 10^11 leaves
    # that a walk without limits would never finish visiting.
    data: Any = LEAF
    for _ in range(11):
        data = {"any": [data] * 10}
    for limits in (LIMITS, STORED_LIMITS):
        with pytest.raises(DefinitionError) as caught:
            parse(data, limits=limits)
        assert caught.value.problems[0][0].startswith("condition")


def test_the_log_keeps_what_it_accepted_before_the_size_limits() -> None:
    stored = in_filter([f"v{i}" for i in range(100_000)])
    assert len(parse(stored).root.value) == 100_000  # type: ignore[union-attr, arg-type]
    with pytest.raises(DefinitionError):
        parse(stored, limits=LIMITS)


def test_too_many_problems_are_summed_up() -> None:
    problems = refused({"lifecycle": ["asleep"] * 500})
    assert len(problems) == 51
    assert problems[-1] == ("condition", "and 450 more problems")


# ---- properties ------------------------------------------------------------------------

FIELDS = [
    "key", "op", "value", "values", "time", "name", "where", "window", "aggregate",
    "property", "within_km", "of", "countries", "cities", "before", "after", "more_than",
    "less_than", "did", "not_did", "within", "_setattr__", "scalar", "combine",
]  # fmt: skip
WORDS = [
    "=", "!=", "<", ">=", "in", "exists", "contains", "starts_with", "24h", "30d", "1.5h",
    "3x", "0s", "2026-01-01T00:00:00Z", "2026-03-29T02:30:00 Europe/Berlin", "new", "active",
    "champions", "lost", "DE", "at", "Berlin", "count", "sum", "avg", "seg-a", "Order",
]  # fmt: skip
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=6),
    st.sampled_from(WORDS),
    st.binary(max_size=3),
    st.datetimes(),
)
anything = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from([*KINDS, *FIELDS]), leaves), inner, max_size=3),
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=anything)
def test_random_input_raises_nothing_but_definition_error(data: Any) -> None:
    for limits in (LIMITS, STORED_LIMITS):
        problems: list[tuple[str, str]] = []
        try:
            parse(data, limits=limits)
        except DefinitionError as error:
            problems = error.problems or [("", "")]
        assert all(isinstance(p, str) and m for p, m in problems), problems


def _filter_items(name: str) -> st.SearchStrategy[dict[str, Any]]:
    value = st.one_of(
        st.sampled_from(WORDS), st.integers(-5, 5), st.floats(allow_nan=True), st.booleans()
    )
    op = st.sampled_from(["=", "!=", "<", ">=", "in", "exists", "contains", "starts_with"])
    return st.fixed_dictionaries(
        {name: st.sampled_from(["plan", "age", "context.country"]), "op": op},
        optional={
            "value": value,
            "values": st.lists(value, min_size=1, max_size=3),
            "time": st.sampled_from(["2026-01-01T00:00:00Z", "2026-03-29T02:30:00 Europe/Berlin"]),
        },
    )


def _body(kind: str) -> st.SearchStrategy[Any]:
    number = st.one_of(st.integers(-3, 20), st.floats(-1e3, 1e3), st.just(math.inf))
    duration = st.one_of(
        st.sampled_from(["24h", "30d", "1.5h", "90s", "3x", "0s"]),
        st.floats(0, 1e6),
        st.integers(0, 10**6),
    )
    where = st.lists(_filter_items("property"), max_size=2)
    name = st.sampled_from(["Order", "App Opened", " "])
    if kind == "trait":
        return _filter_items("key")
    if kind == "geo":
        return st.fixed_dictionaries(
            {},
            optional={
                "within_km": number,
                "of": st.lists(st.floats(-200, 200), min_size=1, max_size=3),
                "countries": st.lists(st.sampled_from(["DE", "at", "DEU"]), max_size=3),
                "cities": st.lists(st.sampled_from(["Berlin", "köln", ""]), max_size=3),
            },
        )
    if kind == "lifecycle":
        return st.lists(st.sampled_from(["new", "active", "churned", "x"]), max_size=3)
    if kind == "rfm":
        return st.lists(st.sampled_from(["champions", "lost", "at_risk", "x"]), max_size=3)
    if kind == "segment":
        return st.sampled_from(["seg-a", "b", "Not An Id"])
    if kind == "events":
        return st.fixed_dictionaries(
            {"name": name},
            optional={
                "where": where,
                "window": duration,
                "aggregate": st.sampled_from(["count", "sum", "avg", "median"]),
                "property": st.sampled_from(["price", ""]),
                "op": st.sampled_from([">=", "<", "=", "in"]),
                "value": number,
            },
        )
    if kind == "recency":
        return st.fixed_dictionaries(
            {"name": name}, optional={"where": where, "more_than": duration, "less_than": duration}
        )
    if kind == "first_seen":
        times = st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01", "yesterday"])
        return st.fixed_dictionaries(
            {}, optional={"before": times, "after": times, "more_than": duration}
        )
    return st.fixed_dictionaries(
        {"did": name, "not_did": name}, optional={"where": where, "within": duration}
    )


leaf_conditions = st.sampled_from(
    ["trait", "geo", "lifecycle", "rfm", "events", "recency", "first_seen", "inaction", "segment"]
).flatmap(lambda kind: _body(kind).map(lambda body: {kind: body}))
conditions = st.recursive(
    leaf_conditions,
    lambda inner: st.builds(
        lambda kind, children: {kind: children},
        st.sampled_from(["all", "any", "none"]),
        st.lists(inner, min_size=1, max_size=3),
    ),
    max_leaves=6,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=conditions)
def test_what_is_accepted_converts_to_protobuf_and_back_unchanged(data: dict[str, Any]) -> None:
    try:
        definition = parse(data, limits=LIMITS)
    except DefinitionError:
        return
    # What SegmentService stores for it: the dict form of the protobuf a client sends.
    stored = condition_to_dict(condition_from_dict(data))
    assert repr(parse(stored)) == repr(definition)


def test_a_duration_of_microseconds_is_written_as_the_parser_reads_it() -> None:
    """Found by the round trip above: 10 us was written "1e-05s", which no parser reads."""
    from services.common.segments.timing import format_duration, parse_duration

    for us in (1, 10, 999_999, 1_000_010, 1_500_000):
        assert parse_duration(format_duration(us)) == us
    assert format_duration(10) == "0.00001s"
