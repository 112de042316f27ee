"""Every condition kind, table-driven: who is a member when, and what entry/exit is published.

Segments here are defined before any history, so their build is empty and they go live at
once; history-built versions are covered by the builder's differential test.
"""

from __future__ import annotations

from typing import Any

import pytest

from services.common.segments.definition import DefinitionError, find_cycle, parse
from services.projector.domain.engine import Engine
from services.projector.domain.policy import AppPolicy, LifecyclePolicy
from tests.support.logevents import DAY, HOUR, MINUTE, T0, identify, purchase, tick, track
from tests.support.segments import Definitions


class Run:
    """An engine with segments defined up front, fed events one at a time."""

    def __init__(self, segments: dict[str, dict[str, Any]]) -> None:
        self.engine = Engine(AppPolicy(lifecycle=LifecyclePolicy(adaptive=False)))
        self.position = 0
        self.definitions = Definitions()
        self.apply(tick(T0 - HOUR))
        for segment_id, condition in segments.items():
            for event in self.definitions.define(segment_id, condition):
                self.apply(event)
            for event in self.definitions.built(segment_id, self.position):
                self.apply(event)
        self.engine.drain()

    def apply(self, *events: object) -> None:
        for event in events:
            self.position += 1
            self.engine.apply(event, self.position)

    def members(self, segment_id: str) -> set[str]:
        return {u.user_id for u in self.engine.users.values() if segment_id in u.memberships}

    def changes(self) -> list[tuple[str, str, str, str]]:
        return [
            (c.user_id, c.segment_id, c.to_value, c.cause)
            for c in self.engine.drain().changes
            if c.kind == "membership"
        ]


def at(minutes: float) -> int:
    return T0 + int(minutes * MINUTE)


TRAITS = {
    "plan-pro": {"trait": {"key": "plan", "op": "=", "value": "pro"}},
    "not-free": {"trait": {"key": "plan", "op": "!=", "value": "free"}},
    "adult": {"trait": {"key": "age", "op": ">=", "value": 18}},
    "young": {"trait": {"key": "age", "op": "<", "value": 30}},
    "nordic": {"trait": {"key": "country", "op": "in", "values": ["SE", "NO", "DK"]}},
    "vip-tag": {"trait": {"key": "tags", "op": "contains", "value": "vip"}},
    "gmail": {"trait": {"key": "email_domain", "op": "starts_with", "value": "gmail"}},
    "has-email": {"trait": {"key": "email_domain", "op": "exists"}},
    "early": {
        "trait": {"key": "signed_up", "op": "<", "time": "2026-03-29T02:30:00 Europe/Berlin"}
    },
}


@pytest.mark.parametrize(
    ("traits", "expected"),
    [
        ({"plan": "pro", "age": 40.0}, {"plan-pro", "not-free", "adult"}),
        ({"plan": "free", "age": 20.0}, {"adult", "young"}),
        ({"age": 17.0, "tags": ["vip", "beta"]}, {"not-free", "young", "vip-tag"}),
        (
            {"country": "NO", "email_domain": "gmail.com"},
            {"not-free", "nordic", "gmail", "has-email"},
        ),
        ({"age": "40"}, {"not-free"}),  # a string is not a number
        ({"plan": True}, {"not-free"}),
    ],
)
def test_trait_operators(traits: dict[str, Any], expected: set[str]) -> None:
    run = Run(TRAITS)
    run.apply(identify("u", at(1), traits=traits))
    assert {s for s in TRAITS if "u" in run.members(s)} == expected


@pytest.mark.parametrize(
    ("signed_up", "member"),
    [
        # 2026-03-29 02:30 does not exist in Berlin (DST starts): it means 01:30 UTC.
        ("2026-03-29T01:29:59Z", True),
        ("2026-03-29T01:30:00Z", False),
        ("2026-03-29T00:30:00Z", True),
    ],
)
def test_time_values_honour_time_zones_and_dst(signed_up: str, member: bool) -> None:
    from services.common.segments.definition import parse_time

    run = Run({"early": TRAITS["early"]})
    run.apply(identify("u", at(1), time_traits={"signed_up": parse_time(signed_up)}))
    assert ("u" in run.members("early")) is member


BERLIN = [52.52, 13.405]


@pytest.mark.parametrize(
    ("place", "near", "dach"),
    [
        ({"country": "DE", "city": "Berlin", "latitude": 52.52, "longitude": 13.41}, True, True),
        ({"country": "DE", "city": "Potsdam", "latitude": 52.39, "longitude": 13.06}, False, True),
        ({"country": "AT", "city": "Vienna", "latitude": 48.21, "longitude": 16.37}, False, True),
        ({"country": "FR", "city": "Paris", "latitude": 48.86, "longitude": 2.35}, False, False),
        ({"city": "berlin"}, False, False),
    ],
)
def test_geo_radius_and_places(place: dict, near: bool, dach: bool) -> None:
    run = Run(
        {
            "near-berlin": {"geo": {"within_km": 20, "of": BERLIN}},
            "dach": {"geo": {"countries": ["DE", "AT", "CH"]}},
            "city": {"geo": {"cities": ["Berlin"]}},
        }
    )
    run.apply(track("u", at(1), context=place))
    members = {s for s in ("near-berlin", "dach", "city") if "u" in run.members(s)}
    assert ("near-berlin" in members) is near
    assert ("dach" in members) is dach
    assert ("city" in members) is (place.get("city", "").lower() == "berlin")


def test_profile_location_wins_over_event_context() -> None:
    run = Run({"dach": {"geo": {"countries": ["DE"]}}})
    run.apply(track("u", at(1), context={"country": "FR"}))
    assert run.members("dach") == set()
    run.apply(identify("u", at(2), location={"country": "DE"}))
    assert run.members("dach") == {"u"}


def test_lifecycle_and_rfm_sets_follow_their_changes() -> None:
    run = Run(
        {
            "fresh": {"lifecycle": ["new"]},
            "gone": {"lifecycle": ["dormant", "churned"]},
            "buyers": {"rfm": ["new_customers"]},
        }
    )
    run.apply(track("u", at(1)))
    assert run.members("fresh") == {"u"}
    run.apply(purchase("u", at(2), revenue=20))
    assert run.members("buyers") == set()  # scored at the next tick
    run.apply(tick(at(3)))
    assert run.members("buyers") == {"u"}  # a lone purchaser scores 5, 1, 1
    run.apply(tick(T0 + 15 * DAY))
    assert run.members("fresh") == set() and run.members("gone") == {"u"}
    assert ("u", "gone", "entered", "time") in run.changes()


def test_event_count_window_slides_without_new_events() -> None:
    # Three adds to cart within 30 minutes; the window is exactly 30 minutes.
    run = Run(
        {"hot": {"events": {"name": "Added to Cart", "window": "30m", "op": ">=", "value": 3}}}
    )
    run.apply(tick(at(0)))
    for minute in (1, 10, 20):
        run.apply(track("u", at(minute), "Added to Cart"))
    assert run.members("hot") == {"u"}
    run.apply(tick(at(30)))  # 1 min entry is still inside: 30 - 30 < 1
    assert run.members("hot") == {"u"}
    run.changes()
    run.apply(tick(at(32)))  # the first add left the window at minute 31, on the clock
    assert run.members("hot") == set()
    ((user, segment, direction, cause),) = run.changes()
    assert (user, segment, direction, cause) == ("u", "hot", "exited", "time")


def test_entry_exactly_on_the_window_edge_is_outside() -> None:
    run = Run({"any": {"events": {"name": "Opened", "window": "1h", "op": ">=", "value": 1}}})
    run.apply(tick(at(60)))
    run.apply(track("u", at(0), "Opened"))  # t = now - window: already outside
    assert run.members("any") == set()
    run.apply(track("v", at(0) + 1, "Opened"))
    assert run.members("any") == {"v"}


@pytest.mark.parametrize(
    ("aggregate", "op", "value", "member"),
    [
        ("count", ">=", 3, True),
        ("count", "=", 4, False),
        ("sum", ">", 59.9, True),
        ("sum", "<=", 59.9, False),
        ("min", "=", 10, True),
        ("max", "<", 30, False),
        ("avg", "=", 20, True),
    ],
)
def test_event_aggregates_with_property_filters(
    aggregate: str, op: str, value: float, member: bool
) -> None:
    condition = {
        "events": {
            "name": "Order Completed",
            "where": [{"property": "category", "op": "=", "value": "shoes"}],
            "window": "7d",
            "aggregate": aggregate,
            "property": "revenue" if aggregate != "count" else "",
            "op": op,
            "value": value,
        }
    }
    if aggregate == "count":
        condition["events"].pop("property")
    run = Run({"s": condition})
    for amount, category in ((10, "shoes"), (20, "shoes"), (30, "shoes"), (500, "hats")):
        run.apply(track("u", at(1), "Order Completed", revenue=amount, category=category))
    assert ("u" in run.members("s")) is member


def test_all_time_aggregates_never_expire() -> None:
    run = Run(
        {
            "big": {
                "events": {
                    "name": "Order Completed",
                    "aggregate": "sum",
                    "property": "revenue",
                    "op": ">",
                    "value": 100,
                }
            }
        }
    )
    run.apply(purchase("u", at(1), 60), purchase("u", at(2), 50))
    run.apply(tick(T0 + 400 * DAY))
    assert run.members("big") == {"u"}


def test_recency_more_and_less_than() -> None:
    run = Run(
        {
            "recent": {"recency": {"name": "App Opened", "less_than": "1d"}},
            "lapsed": {"recency": {"name": "App Opened", "more_than": "1d"}},
        }
    )
    run.apply(tick(at(0)), track("u", at(1)))
    assert run.members("recent") == {"u"} and run.members("lapsed") == set()
    run.apply(tick(at(1) + DAY - 1))
    assert run.members("recent") == {"u"}
    run.apply(tick(at(1) + DAY))  # exactly one day: no longer less than, now more than
    assert run.members("recent") == set() and run.members("lapsed") == {"u"}


def test_first_seen_absolute_and_relative() -> None:
    run = Run(
        {
            "old-timers": {"first_seen": {"before": "2026-01-01T12:00:00+01:00"}},
            "veterans": {"first_seen": {"more_than": "30d"}},
        }
    )
    run.apply(track("u", T0 + 10 * HOUR), track("v", T0 + 12 * HOUR))
    assert run.members("old-timers") == {"u"}  # 11:00 UTC is the edge
    run.apply(tick(T0 + 10 * HOUR + 30 * DAY))
    assert run.members("veterans") == {"u"}


def test_inaction_cart_abandoned_no_purchase_within_24h() -> None:
    run = Run(
        {
            "abandoned": {
                "inaction": {"did": "Added to Cart", "not_did": "Order Completed", "within": "24h"}
            }
        }
    )
    run.apply(tick(at(0)))
    run.apply(track("u", at(1), "Added to Cart"), track("v", at(1), "Added to Cart"))
    run.apply(purchase("v", at(60), 5))  # v bought in time
    run.apply(tick(at(1) + 24 * HOUR - 1))
    assert run.members("abandoned") == set()
    run.apply(tick(at(1) + 24 * HOUR))
    assert run.members("abandoned") == {"u"}
    assert run.changes() == [("u", "abandoned", "entered", "time")]
    run.apply(purchase("u", at(1) + 30 * HOUR, 5))  # buying later ends it
    assert run.members("abandoned") == set()
    run.apply(track("u", at(1) + 31 * HOUR, "Added to Cart"))  # a new cart starts again
    run.apply(tick(at(1) + 55 * HOUR))
    assert run.members("abandoned") == {"u"}


def test_boolean_combinations_and_segment_references() -> None:
    run = Run(
        {
            "buyers": {"events": {"name": "Order Completed", "op": ">=", "value": 1}},
            "pro": {"trait": {"key": "plan", "op": "=", "value": "pro"}},
            "pro-non-buyers": {"all": [{"segment": "pro"}, {"none": [{"segment": "buyers"}]}]},
            "either": {"any": [{"segment": "pro"}, {"segment": "buyers"}]},
        }
    )
    run.apply(identify("u", at(1), traits={"plan": "pro"}))
    assert run.members("pro-non-buyers") == {"u"} and run.members("either") == {"u"}
    run.changes()
    run.apply(purchase("u", at(2), 10))
    assert run.members("pro-non-buyers") == set()
    assert sorted(run.changes()) == [
        ("u", "buyers", "entered", "event"),
        ("u", "pro-non-buyers", "exited", "event"),
    ]


def test_negations_hold_for_brand_new_users() -> None:
    run = Run({"never-bought": {"none": [{"events": {"name": "Order Completed", "value": 1}}]}})
    run.apply(track("u", at(1)))
    assert run.members("never-bought") == {"u"}


def test_archive_publishes_exits_and_redefinition_publishes_the_difference() -> None:
    run = Run({"pro": {"trait": {"key": "plan", "op": "=", "value": "pro"}}})
    run.apply(
        identify("a", at(1), traits={"plan": "pro"}), identify("b", at(1), traits={"plan": "basic"})
    )
    run.changes()
    run.apply(
        *run.definitions.redefine(
            "pro", {"trait": {"key": "plan", "op": "in", "values": ["pro", "basic"]}}
        )
    )
    assert run.members("pro") == {"a"}  # not switched until built
    run.apply(*run.definitions.built("pro", run.position))
    assert run.members("pro") == {"a", "b"}
    assert run.changes() == [("b", "pro", "entered", "redefinition")]
    run.apply(*run.definitions.archive("pro"))
    assert run.members("pro") == set()
    assert sorted(run.changes()) == [
        ("a", "pro", "exited", "redefinition"),
        ("b", "pro", "exited", "redefinition"),
    ]


def test_silent_redefinition_switches_without_publishing() -> None:
    run = Run({"pro": {"trait": {"key": "plan", "op": "=", "value": "pro"}}})
    run.apply(identify("a", at(1), traits={"plan": "basic"}))
    run.apply(
        *run.definitions.redefine("pro", {"trait": {"key": "plan", "op": "exists"}}, silent=True)
    )
    run.apply(*run.definitions.built("pro", run.position))
    assert run.members("pro") == {"a"}
    changes = [c for c in run.engine.drain().changes if c.kind == "membership"]
    assert [(c.to_value, c.published) for c in changes] == [("entered", False)]


@pytest.mark.parametrize(
    ("condition", "path"),
    [
        ({"events": {"name": "x", "window": "3 parsecs"}}, "condition.events.window"),
        ({"all": []}, "condition.all"),
        ({"all": [{"trait": {"key": "a", "op": "~"}}]}, "condition.all[0].trait.op"),
        ({"any": [{"lifecycle": ["asleep"]}]}, "condition.any[0].lifecycle[0]"),
        ({"geo": {"within_km": -1, "of": [0, 0]}}, "condition.geo.within_km"),
        ({"geo": {"within_km": 5, "of": [95, 0]}}, "condition.geo.of"),
        ({"recency": {"name": "x"}}, "condition.recency"),
        ({"inaction": {"did": "a", "not_did": "b"}}, "condition.inaction.within"),
        (
            {"events": {"name": "x", "aggregate": "sum", "op": ">", "value": 1}},
            "condition.events.property",
        ),
        ({"trait": {"key": "a", "op": ">", "value": "x"}}, "condition.trait.value"),
        ({"first_seen": {"before": "yesterday"}}, "condition.first_seen.before"),
        ({"segment": "Not An Id"}, "condition.segment"),
        ({"rfm": ["vip"]}, "condition.rfm[0]"),
        ({"wat": 1}, "condition"),
        # Names of the parser's own parts are not condition kinds.
        *(
            ({kind: body}, "condition")
            for kind in (
                "name",
                "combine",
                "fields",
                "duration",
                "scalar",
                "operand",
                "filters",
                "names",
                "node",
                "fail",
                "_init__",
                "_class__",
                "_getattribute__",
                "_setattr__",
                "__init__",
                "__class__",
            )
            for body in ("x", {}, [], {"key": "a"}, None)
        ),
        ({"all": [{"trait": {"key": "a", "op": ["="]}}]}, "condition.all[0].trait.op"),
        ({"lifecycle": [["new"]]}, "condition.lifecycle[0]"),
        ({"events": {"name": "x", "aggregate": {}}}, "condition.events.aggregate"),
        ({"events": {"name": "x", "op": []}}, "condition.events.op"),
        ({"events": {"name": "x", "property": 5}}, "condition.events.property"),
        ({"events": {"name": "x", "value": 10**400}}, "condition.events.value"),
        ({"trait": {"key": "a", "op": "=", "value": 10**400}}, "condition.trait.value"),
        ({"trait": {"key": "a", "op": "=", "value": 10**5000}}, "condition.trait.value"),
        ({"geo": {"within_km": 10**400, "of": [0, 0]}}, "condition.geo.within_km"),
        ({"events": {"name": "x", "window": "99999999999y"}}, "condition.events.window"),
        ({"events": {"name": "x", "window": 10**30}}, "condition.events.window"),
        ({"trait": {"key": "a", "op": "=", "value": [1]}}, "condition.trait.value"),
        ({"trait": {"key": "a", "op": "=", "value": 1, 7: 8}}, "condition.trait.7"),
        ({None: 1}, "condition"),
        # zoneinfo reads "America" as a directory of zones (an OSError, not "not found").
        (
            {"trait": {"key": "a", "op": "<", "time": "2026-01-01T00:00:00 America"}},
            "condition.trait.time",
        ),
    ],
)
def test_bad_definitions_name_the_failing_node(condition: dict, path: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse(condition)
    assert path in [p for p, _ in caught.value.problems], caught.value.problems


def test_an_unknown_kind_is_named_with_the_valid_kinds() -> None:
    with pytest.raises(DefinitionError) as caught:
        parse({"all": [{"lifecycle": ["new"]}, {"scalar": "other"}]})
    ((path, message),) = caught.value.problems
    assert path == "condition.all[1]"
    assert message == (
        "unknown condition kind 'scalar'; one of all, any, none, trait, geo, lifecycle, rfm,"
        " events, recency, first_seen, inaction, segment"
    )


def test_cycles_are_found() -> None:
    graph = {"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset()}
    assert find_cycle("c", {**graph, "c": frozenset({"a"})}) == ["c", "a", "b", "c"]
    assert find_cycle("a", graph) is None
