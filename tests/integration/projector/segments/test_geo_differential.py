"""Geo conditions see the best location known, live and in previews alike.

Locations come from Identify (with or without coordinates), from event context
(country only, a whole place, coordinates), and both, in every order, some late.
The projector on PostgreSQL folds the history with geo segments defined midway
(built from history, then live); its members must equal the whole-definition SQL
of previews, a pure incremental engine, and, for hand-made users, what the rule
in services/projector/domain/location.py says.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from tests.support.logevents import MINUTE, T0, identify, tick, track
from tests.support.projector import in_process_projector
from tests.support.segment_history import (
    drafts_and_live,
    reference,
    save_segments,
    wait_settled,
)

GEO: dict[str, dict[str, Any]] = {
    "berlin-10km": {"geo": {"within_km": 10, "of": [52.52, 13.405]}},
    "berlin-city": {"geo": {"cities": ["Berlin"]}},
    "germany": {"geo": {"countries": ["DE"]}},
    "paris-or-fr": {"geo": {"countries": ["FR"], "cities": ["Paris"], "within_km": 5,
                            "of": [48.86, 2.35]}},
    "near-and-de": {"all": [{"segment": "germany"}, {"geo": {"within_km": 40,
                                                              "of": [52.52, 13.405]}}]},
}  # fmt: skip
MITTE = {"country": "DE", "city": "Berlin", "latitude": 52.5200, "longitude": 13.4049}
POTSDAM = {"country": "DE", "city": "Potsdam", "latitude": 52.39, "longitude": 13.06}
PARIS = {"country": "FR", "city": "Paris", "latitude": 48.86, "longitude": 2.35}
OBSERVATIONS = [
    MITTE,
    POTSDAM,
    PARIS,
    {"country": "DE", "city": "Berlin"},
    {"country": "DE"},
    {"country": "FR", "city": "Paris"},
    {"latitude": 52.53, "longitude": 13.41},
    {"city": "berlin"},
]

# Hand-made users: (steps of (minute, source, place)), members expected at the end.
CASES: dict[str, tuple[list[tuple[int, str, dict[str, Any]]], set[str]]] = {
    # Identify without coordinates, then events that carry them: within 10 km of Berlin.
    "g-identify-then-event": (
        [(5, "identify", {"country": "DE", "city": "Berlin"}), (20, "event", MITTE)],
        {"berlin-10km", "berlin-city", "germany", "near-and-de"},
    ),
    # Coordinates first, then a coarse Identify of the same place: they stay.
    "g-event-then-identify": (
        [(5, "event", MITTE), (20, "identify", {"country": "DE"})],
        {"berlin-10km", "berlin-city", "germany", "near-and-de"},
    ),
    # A newer coarse location elsewhere contradicts the old coordinates: they go.
    "g-moved": (
        [(5, "event", MITTE), (20, "identify", {"country": "FR", "city": "Paris"})],
        {"paris-or-fr"},
    ),
    # Only a country from events: country conditions only.
    "g-country-only": ([(5, "event", {"country": "DE"})], {"germany"}),
    # A late event from Paris does not override a newer Identify in Berlin.
    "g-late-paris": (
        [(30, "identify", MITTE), (-10, "event", PARIS)],
        {"berlin-10km", "berlin-city", "germany", "near-and-de"},
    ),
}


def geo_history(seed: int) -> tuple[list[object], int]:
    """Random observations for u1..u8, plus the hand-made users; (events, split index)."""
    rng = random.Random(seed)
    now = T0
    events: list[object] = [tick(now)]
    for _ in range(160):
        if rng.random() < 0.2:
            now += rng.choice([5, 15, 30]) * MINUTE
            events.append(tick(now))
            continue
        user = rng.choice([f"u{i}" for i in range(1, 9)])
        when = now - rng.choice([0, 0, 0, 10, 40]) * MINUTE
        place = dict(rng.choice(OBSERVATIONS))
        if rng.random() < 0.4:
            events.append(identify(user, when, location=place))
        else:
            events.append(track(user, when, rng.choice("ABC"), context=place))
    split = len(events) // 2
    for user, (steps, _members) in CASES.items():
        for minute, source, place in steps:
            when = now + minute * MINUTE
            if source == "identify":
                events.append(identify(user, when, location=place))
            else:
                events.append(track(user, when, "A", context=place))
        now += 20 * MINUTE
        events.append(tick(now))
    return events, split


@pytest.mark.parametrize("seed", [11, 12, 13])
async def test_geo_members_agree_live_in_previews_and_with_the_rule(
    database_url: str, nats_server: Any, seed: int
) -> None:
    events, split = geo_history(seed)
    async with in_process_projector(database_url, nats_server.url) as running:
        app, log = running.app, running.log
        log.append_new([log.encode(e) for e in events[:split]])
        save_segments(log, GEO)  # built from history, then live
        log.append_new([log.encode(e) for e in events[split:]])
        await wait_settled(app, log, len(GEO))
        incremental = reference(events, GEO)
        seen_members = 0
        for segment_id, (draft, live) in drafts_and_live(database_url, GEO).items():
            pure = {u.user_id for u in incremental.users.values() if segment_id in u.memberships}
            assert draft == live == pure, segment_id
            seen_members += len(live)
            for user, (_steps, expected) in CASES.items():
                assert (user in live) is (segment_id in expected), (user, segment_id)
        assert seen_members > 10
