"""The best location known: most recent first, completed by older observations that agree."""

from __future__ import annotations

import pytest

from services.projector.domain import location
from tests.support.logevents import MINUTE, T0, identify, tick, track
from tests.unit.projector.test_segments import Run

BERLIN = [52.52, 13.405]
MITTE = {"country": "DE", "city": "Berlin", "latitude": 52.5200, "longitude": 13.4049}
SEGMENTS = {
    "berlin-10km": {"geo": {"within_km": 10, "of": BERLIN}},
    "germany": {"geo": {"countries": ["DE"]}},
    "berlin": {"geo": {"cities": ["Berlin"]}},
    "france": {"geo": {"countries": ["FR"]}},
}


def at(minutes: float) -> int:
    return T0 + int(minutes * MINUTE)


def geo_members(run: Run, user: str = "u") -> set[str]:
    return {s for s in SEGMENTS if user in run.members(s)}


def test_observed_keeps_only_place_fields_and_whole_valid_coordinates() -> None:
    assert location.observed({"country": "DE", "os": "ios", "city": ""}) == {"country": "DE"}
    assert location.observed({"latitude": 52.5}) == {}  # half a coordinate is none
    assert location.observed({"latitude": 95.0, "longitude": 1.0}) == {}
    assert location.observed({"latitude": True, "longitude": 1.0}) == {}
    assert location.observed({"latitude": 1, "longitude": 2}) == {"latitude": 1.0, "longitude": 2.0}


@pytest.mark.parametrize(
    ("newer", "older", "expected"),
    [
        # Same place, coarser: keeps the older coordinates.
        ({"country": "DE", "city": "Berlin"}, MITTE, MITTE),
        ({"country": "de"}, MITTE, {**MITTE, "country": "de"}),
        # A different city or country: the older coordinates would mislead, so they go.
        ({"country": "FR", "city": "Paris"}, MITTE, {"country": "FR", "city": "Paris"}),
        ({"city": "Munich"}, MITTE, {"city": "Munich"}),
        # Nothing to compare (no country or city on one side): nothing borrowed.
        ({"latitude": 48.1, "longitude": 11.6}, MITTE, {"latitude": 48.1, "longitude": 11.6}),
        (
            {"country": "DE"},
            {"latitude": 52.5, "longitude": 13.4},
            {"country": "DE"},
        ),
        # The newer coordinates always win over older ones.
        (
            {"country": "DE", "city": "Berlin", "latitude": 52.6, "longitude": 13.3},
            MITTE,
            {"country": "DE", "city": "Berlin", "latitude": 52.6, "longitude": 13.3},
        ),
    ],
)
def test_refine_completes_the_newer_only_from_an_older_that_agrees(
    newer: dict, older: dict, expected: dict
) -> None:
    assert location.refine(newer, older) == expected


def test_fold_is_by_event_time_not_by_arrival() -> None:
    paris = {"country": "FR", "city": "Paris"}
    # Berlin seen at 10, then a late observation from 5 (Paris) arrives: Berlin stays.
    assert location.fold(MITTE, at(10), paris, at(5)) == MITTE
    # The same observation on time (at 15) moves the user.
    assert location.fold(MITTE, at(10), paris, at(15)) == paris


def test_identify_without_coordinates_keeps_the_coordinates_events_carry() -> None:
    run = Run(SEGMENTS)
    run.apply(identify("u", at(1), location={"country": "DE", "city": "Berlin"}))
    assert geo_members(run) == {"germany", "berlin"}
    run.apply(track("u", at(2), context=MITTE))
    assert geo_members(run) == {"berlin-10km", "germany", "berlin"}
    # A later Identify of the same place, still without coordinates: nothing is lost.
    run.apply(identify("u", at(3), location={"country": "DE", "city": "Berlin"}))
    assert geo_members(run) == {"berlin-10km", "germany", "berlin"}


def test_event_coordinates_then_a_coarse_identify_of_the_same_place() -> None:
    run = Run(SEGMENTS)
    run.apply(track("u", at(1), context=MITTE))
    run.apply(identify("u", at(2), location={"country": "DE"}))
    assert geo_members(run) == {"berlin-10km", "germany", "berlin"}


def test_a_newer_coarse_location_elsewhere_drops_the_old_coordinates() -> None:
    run = Run(SEGMENTS)
    run.apply(track("u", at(1), context=MITTE))
    run.apply(identify("u", at(2), location={"country": "FR", "city": "Paris"}))
    assert geo_members(run) == {"france"}
    # Events from Berlin again, later than the Identify: the user is back, and the
    # coordinates seen in Berlin before agree with where they are now.
    run.apply(track("u", at(3), context={"country": "DE", "city": "Berlin"}))
    assert geo_members(run) == {"berlin-10km", "germany", "berlin"}
    run.apply(track("u", at(4), context={"country": "DE", "city": "Potsdam"}))
    assert geo_members(run) == {"germany"}


def test_a_late_event_does_not_move_a_user_seen_somewhere_else_since() -> None:
    run = Run(SEGMENTS)
    run.apply(tick(at(60)))
    run.apply(identify("u", at(59), location={"country": "DE", "city": "Berlin"}))
    run.apply(track("u", at(10), context={"country": "FR", "city": "Paris"}))  # 50 min late
    assert geo_members(run) == {"germany", "berlin"}
    # A late event of the same place still fills in what the newer one lacks.
    run.apply(track("u", at(20), context=MITTE))
    assert geo_members(run) == {"berlin-10km", "germany", "berlin"}


def test_events_without_coordinates_keep_the_coordinates_of_earlier_events() -> None:
    run = Run(SEGMENTS)
    run.apply(track("u", at(1), context=MITTE))
    run.apply(track("u", at(2), context={"country": "DE", "city": "Berlin", "os": "ios"}))
    run.apply(track("u", at(3), context={"os": "ios"}))  # no place at all: no observation
    assert geo_members(run) == {"berlin-10km", "germany", "berlin"}


def test_an_anonymous_history_brings_its_locations_along() -> None:
    run = Run(SEGMENTS)
    run.apply(track("", at(1), anonymous_id="dev-1", context=MITTE))
    run.apply(identify("u", at(2), anonymous_id="dev-1", location={"country": "DE"}))
    assert geo_members(run) == {"berlin-10km", "germany", "berlin"}
    assert run.engine.users[("app", "u")].place == MITTE
