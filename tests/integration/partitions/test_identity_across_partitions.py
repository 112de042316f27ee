"""An anonymous user who turns out to be a known user of another partition: merged there,
exactly as one fold of the whole log merges them, and later anonymous events follow."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

from services.eventlog.partitioned import PartitionedLog
from services.eventlog.partitions import partition_of
from services.projector.config import Policies
from services.projector.domain.engine import Engine
from tests.integration.partitions.conftest import P
from tests.support.logevents import DAY, HOUR, MINUTE, T0, track
from tests.support.partitioned import apart, route, story, wait_folded, wait_live
from tests.support.projector import in_process_projector
from tests.support.segment_history import save_segments

SEGMENTS = {
    "carts-3-in-7d": {
        "events": {
            "name": "Added to Cart",
            "window": "7d",
            "aggregate": "count",
            "op": ">=",
            "value": 3,
        }
    },
    "from-berlin": {"geo": {"cities": ["Berlin"]}},
}


async def test_an_anonymous_history_is_handed_over_to_its_users_partition(
    partitioned: tuple[str, PartitionedLog], nats_server: Any
) -> None:
    url, log = partitioned
    user = "ada"
    device = apart(user, P)
    save_segments(log.home, SEGMENTS)
    events = story(user, device)
    async with in_process_projector(url, nats_server.url):
        await wait_live(log, len(SEGMENTS))
        links: dict[tuple[str, str], str] = {}
        route(log, events[:6], links)  # through the Identify
        # The device's partition hands its history over (the user has its 3 events).
        await _until(lambda: (_profile(url, user) or ("", 0, 0))[1] == 3)
        # Later events of the device go to the user's partition, as ingest routes them.
        route(log, events[6:], links)
        await _until(lambda: (_profile(url, user) or ("", 0, 0))[1] == 5)
        await wait_folded(log)
        await asyncio.sleep(0.5)
        await wait_folded(log)
        profile = _profile(url, user)
        anonymous = _profile(url, f"anonymous:{device}")
        members = _members(url)
        changes = _changes(url, user)
    # The one-log fold of the same events (segments defined first, as here).
    reference = Engine(Policies())
    from tests.support.segments import Definitions

    definitions = Definitions()
    prelude: list[object] = []
    for segment_id, condition in SEGMENTS.items():
        prelude += definitions.define(segment_id, condition)
        prelude += definitions.built(segment_id, len(prelude))
    reference.apply_all((e, n) for n, e in enumerate([*prelude, *events], 1))
    expected = reference.users[("app", user)]
    assert ("app", f"anonymous:{device}") not in reference.users
    assert anonymous is None  # gone from its partition
    assert profile == (expected.state, expected.event_count, partition_of("app", user, P))
    assert {s for s, u in members if u == user} == set(expected.memberships)
    assert not [u for _s, u in members if u.startswith("anonymous:")]
    # The same changes of the user: the merged carts completed "3 in 7 days" (entered, then
    # left as the window slid past), the Berlin history put them in "from Berlin".
    assert changes == [
        (c.kind, c.to_value, c.segment_id, c.effective_us)
        for c in reference.drain().changes
        if c.user_id == user
    ]
    assert ("membership", "entered", "carts-3-in-7d") in [c[:3] for c in changes]


def _profile(url: str, user: str) -> tuple[str, int, int] | None:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT lifecycle_state, event_count, partition FROM projector_profiles"
            " WHERE app_id = 'app' AND user_id = %s",
            (user,),
        ).fetchone()
    return (str(row[0]), int(row[1]), int(row[2])) if row else None


def _changes(url: str, user: str) -> list[tuple[str, str, str, int]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT kind, to_value, coalesce(details->>'segment_id', ''), effective_us"
            " FROM projector_changes WHERE app_id = 'app' AND user_id = %s ORDER BY sequence",
            (user,),
        ).fetchall()
    return [(str(k), str(t), str(s), int(e)) for k, t, s, e in rows]


def _members(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        return [(s, u) for s, u in conn.execute("SELECT segment_id, user_id FROM segment_members")]


async def _until(condition: Any, within: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await asyncio.to_thread(condition):
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.1)


_ = MINUTE


async def test_an_event_routed_before_the_link_was_known_is_sent_on_to_the_user(
    partitioned: tuple[str, PartitionedLog], nats_server: Any
) -> None:
    """A straggler (ingest routed it by the anonymous id, before it knew the link) reaches
    the device's partition after the hand-over: that partition sends it on, and it counts
    for the user, once."""
    url, log = partitioned
    user = "grace"
    device = apart(user, P)
    events = story(user, device)
    async with in_process_projector(url, nats_server.url):
        links: dict[tuple[str, str], str] = {}
        route(log, events[:6], links)
        await _until(lambda: (_profile(url, user) or ("", 0, 0))[1] == 3)
        straggler = track("", T0 + DAY + 4 * HOUR, "Added to Cart", anonymous_id=device)
        route(log, [straggler])  # by the anonymous id: the device's partition
        await _until(lambda: (_profile(url, user) or ("", 0, 0))[1] == 4)
        await wait_folded(log)
        await asyncio.sleep(0.3)
        await wait_folded(log)
        assert (_profile(url, user) or ("", 0, 0))[1] == 4
        assert _profile(url, f"anonymous:{device}") is None
        with psycopg.connect(url) as conn:
            owners = conn.execute(
                "SELECT user_id, position >> 48 FROM projector_facts WHERE name = 'Added to Cart'"
                " AND event_time_us = %s",
                (straggler.event_time_us,),
            ).fetchall()
    assert owners == [(user, partition_of("app", user, P))]
