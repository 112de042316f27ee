"""Random histories and segment definitions for differential tests of the segment paths,
and what waits for and reads the projector's results of them."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from services.eventlog.segments import Segment
from services.eventlog.store import EventLog
from services.projector.domain.engine import Engine
from tests.support.logevents import MINUTE, T0, identify, purchase, tick, track
from tests.support.segments import Definitions

SEGMENTS: dict[str, dict[str, Any]] = {
    "w-count": {"events": {"name": "A", "window": "3h", "op": ">=", "value": 2}},
    "w-sum-filtered": {
        "events": {
            "name": "A",
            "window": "2h",
            "aggregate": "sum",
            "property": "v",
            "op": ">",
            "value": 8,
            "where": [{"property": "k", "op": "in", "values": ["x", "z"]}],
        }
    },
    "w-min-ctx": {
        "events": {
            "name": "B",
            "window": "4h",
            "aggregate": "min",
            "property": "v",
            "op": "<=",
            "value": 3,
            "where": [{"property": "context.country", "op": "=", "value": "DE"}],
        }
    },
    "w-avg-time": {
        "events": {
            "name": "C",
            "window": "5h",
            "aggregate": "avg",
            "property": "ts",
            "op": ">",
            "value": float(T0 + 60 * MINUTE),
        }
    },
    "t-max": {"events": {"name": "B", "aggregate": "max", "property": "v", "op": ">=", "value": 9}},
    "t-count-ne": {
        "events": {
            "name": "A",
            "op": ">=",
            "value": 3,
            "where": [{"property": "k", "op": "!=", "value": "y"}],
        }
    },
    "t-in-many": {  # more than 8 values: PostgreSQL hashes the array
        "events": {
            "name": "B",
            "op": ">=",
            "value": 2,
            "where": [
                {"property": "v", "op": "in", "values": [0, 2, 4, 6, 8, 10, "4", True, 12.5]}
            ],
        }
    },
    "t-contains": {
        "events": {
            "name": "C",
            "op": ">=",
            "value": 1,
            "where": [{"property": "tags", "op": "contains", "value": "red"}],
        }
    },
    "t-starts": {
        "events": {
            "name": "A",
            "op": ">=",
            "value": 1,
            "where": [{"property": "k", "op": "starts_with", "value": "z"}],
        }
    },
    "t-exists-lt": {
        "events": {
            "name": "B",
            "op": ">=",
            "value": 2,
            "where": [{"property": "ts", "op": "exists"}, {"property": "v", "op": "<", "value": 7}],
        }
    },
    "t-time-filter": {
        "events": {
            "name": "C",
            "op": ">=",
            "value": 1,
            "where": [{"property": "ts", "op": ">=", "time": "2026-01-01T02:00:00Z"}],
        }
    },
    "recent-b": {"recency": {"name": "B", "less_than": "90m"}},
    "lapsed-a": {
        "recency": {
            "name": "A",
            "more_than": "2h",
            "where": [{"property": "v", "op": ">", "value": 2}],
        }
    },
    "abandoned": {
        "inaction": {
            "did": "A",
            "not_did": "B",
            "within": "1h",
            "where": [{"property": "k", "op": "=", "value": "x"}],
        }
    },
    "combo": {"all": [{"segment": "w-count"}, {"none": [{"segment": "recent-b"}]}]},
}


def history(seed: int) -> list[object]:
    rng = random.Random(seed)
    now = T0
    out: list[object] = [tick(now)]
    for _ in range(400):
        if rng.random() < 0.15:
            now += rng.choice([5, 15, 30, 60, 90]) * MINUTE
            out.append(tick(now))
            continue
        when = now - rng.choice([0, 0, 0, 10, 45, 120, 300]) * MINUTE
        props: dict[str, Any] = {
            "v": float(rng.randrange(11)),
            "k": rng.choice("xyz") + rng.choice(["", "a"]),
        }
        if rng.random() < 0.5:
            props["tags"] = rng.sample(["red", "blue", "green"], rng.randrange(3))
        event = track(
            rng.choice(["u1", "u2", "u3", "u4", "u5", "u6"]),
            when,
            rng.choice("ABC"),
            context={"country": rng.choice(["DE", "FR", "US"])},
            **props,
        )
        if rng.random() < 0.6:
            times = {"ts": when - rng.randrange(0, 240) * MINUTE}
            object.__setattr__(event, "time_properties", times)
        out.append(event)
    return out


def reference(events: list[object], segments: dict[str, dict[str, Any]] | None = None) -> Engine:
    """The incremental path: `segments` (default SEGMENTS) defined before any event."""
    engine = Engine()
    definitions = Definitions()
    position = 0
    for segment_id, condition in (SEGMENTS if segments is None else segments).items():
        for event in [*definitions.define(segment_id, condition)]:
            position += 1
            engine.apply(event, position)
        for event in definitions.built(segment_id, position):
            position += 1
            engine.apply(event, position)
    for event in events:
        position += 1
        engine.apply(event, position)
    return engine


def save_segments(log: EventLog, segments: dict[str, dict[str, Any]]) -> None:
    for segment_id, condition in segments.items():
        log.save(
            Segment(
                app_id="app",
                segment_id=segment_id,
                display_name=segment_id,
                description="",
                definition=condition,
            )
        )


async def wait_settled(app: Any, log: EventLog, segments: int) -> None:
    """Until `segments` segments are active and the projector has folded the whole log."""

    def settled() -> bool:
        with app.store.cursor() as curs:
            curs.execute("SELECT count(*) AS n FROM segments WHERE state = 'active'")
            row = curs.fetchone()
            active = bool(row) and row["n"] == segments
        return active and app.projection.position >= log.head_position()

    deadline = asyncio.get_running_loop().time() + 60
    while not await asyncio.to_thread(settled):
        assert asyncio.get_running_loop().time() < deadline, "not settled"
        await asyncio.sleep(0.1)


def drafts_and_live(
    database_url: str, segments: dict[str, dict[str, Any]]
) -> dict[str, tuple[set[str], set[str]]]:
    """segment -> (members by the whole-definition SQL of previews, live members)."""
    import psycopg

    from services.common.segments.definition import parse
    from services.projector.adapters.preview import members_query

    out = {}
    with psycopg.connect(database_url) as conn:
        position = conn.execute(
            "SELECT notification_id FROM projector_tracking WHERE application_name = 'cohortflow'"
        ).fetchone()[0]
        now_us = conn.execute("SELECT value FROM projector_meta WHERE name = 'now_us'").fetchone()[
            0
        ]
        for segment_id, condition in segments.items():
            query = members_query("app", parse(condition), position, now_us)
            draft = {r[0] for r in conn.execute(query).fetchall()}
            live = {
                r[0]
                for r in conn.execute(
                    "SELECT user_id FROM segment_members WHERE app_id = 'app' AND segment_id = %s",
                    (segment_id,),
                ).fetchall()
            }
            out[segment_id] = (draft, live)
    return out


PROFILE_SEGMENTS: dict[str, dict[str, Any]] = {
    "pro": {"trait": {"key": "plan", "op": "=", "value": "pro"}},
    "not-basic": {"trait": {"key": "plan", "op": "!=", "value": "basic"}},
    "old-enough": {"trait": {"key": "age", "op": ">=", "value": 30}},
    "tagged": {"trait": {"key": "tags", "op": "contains", "value": "vip"}},
    "signed-early": {"trait": {"key": "signed_up", "op": "<", "time": "2025-06-01T00:00:00Z"}},
    "near-berlin": {"geo": {"within_km": 50, "of": [52.52, 13.405]}},
    "dach": {"geo": {"countries": ["DE", "AT"], "cities": ["Zurich"]}},
    "lively": {"lifecycle": ["new", "active", "reactivated"]},
    "buyers": {
        "rfm": [
            "lost",
            "hibernating",
            "champions",
            "loyal",
            "new_customers",
            "potential_loyalists",
            "promising",
            "need_attention",
            "about_to_sleep",
            "at_risk",
            "cant_lose_them",
        ]
    },
    "veterans": {"first_seen": {"more_than": "3h"}},
    "mix": {
        "all": [
            {"segment": "pro"},
            {"any": [{"segment": "w-count"}, {"none": [{"segment": "dach"}]}]},
        ]
    },
}
PLACES = [
    {"country": "DE", "city": "Berlin", "latitude": 52.52, "longitude": 13.40},
    {"country": "DE", "city": "Potsdam", "latitude": 52.39, "longitude": 13.06},
    {"country": "FR", "city": "Paris", "latitude": 48.86, "longitude": 2.35},
    {"country": "CH", "city": "Zurich", "latitude": 47.37, "longitude": 8.54},
]


def profiled_history(seed: int) -> list[object]:
    rng = random.Random(seed)
    events = history(seed)
    extra: list[object] = []
    for user in ("u1", "u2", "u3", "u4", "u5", "u6", "u7"):
        place = rng.choice(PLACES)
        traits: dict[str, Any] = {
            "plan": rng.choice(["pro", "basic", "free"]),
            "age": float(rng.randrange(18, 60)),
        }
        if rng.random() < 0.5:
            traits["tags"] = rng.sample(["vip", "beta", "new"], 2)
        extra.append(
            identify(
                user,
                T0 + rng.randrange(0, 300) * MINUTE,
                traits=traits,
                time_traits={"signed_up": T0 - rng.randrange(100, 400) * 86_400_000_000},
                location=place if rng.random() < 0.5 else {},
            )
        )
        extra.append(
            purchase(user, T0 + rng.randrange(0, 300) * MINUTE, float(rng.randrange(1, 90)))
        )
    merged = events[:1] + sorted([*events[1:], *extra], key=_when)
    return merged


def _when(event: object) -> int:
    return getattr(event, "event_time_us", getattr(event, "tick_time_us", 0))
