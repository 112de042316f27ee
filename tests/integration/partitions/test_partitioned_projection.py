"""Partitioned projection: every partition folded once, by whichever worker holds it."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import psycopg

from services.common.jetstream import ChangeStreamSettings
from services.eventlog.partitioned import PartitionedLog
from services.eventlog.partitions import decode_position, partition_of
from services.projector.config import Policies
from services.projector.domain.engine import Engine
from tests.integration.partitions.conftest import P
from tests.support.changes import delete_stream, read_all, unique_streams
from tests.support.logevents import DAY, HOUR, T0, tick, track
from tests.support.partitioned import route, wait_folded, wait_live
from tests.support.projector import in_process_projector
from tests.support.segment_history import SEGMENTS, save_segments
from tests.support.segment_history import history as segment_history
from tests.support.segment_history import reference as segment_reference


def history(users: int, seed: int = 1) -> list[object]:
    rng = random.Random(seed)
    events: list[object] = []
    for day in range(20):
        events.append(tick(T0 + day * DAY))
        for user in range(users):
            if rng.random() < 0.5 - day / 50:
                events.append(track(f"user-{user}", T0 + day * DAY + rng.randrange(HOUR)))
    events.append(tick(T0 + 40 * DAY))
    return events


def reference(events: list[object]) -> Engine:
    engine = Engine(Policies())
    engine.apply_all((event, position) for position, event in enumerate(events, 1))
    return engine


def profiles(url: str) -> dict[str, tuple[str, int, int]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT user_id, lifecycle_state, event_count, partition FROM projector_profiles"
        )
        return {user: (state, count, partition) for user, state, count, partition in rows}


async def test_each_partition_is_folded_once_and_users_end_as_one_fold_would(
    partitioned: tuple[str, PartitionedLog], nats_server: Any
) -> None:
    url, log = partitioned
    events = history(60)
    route(log, events)
    async with in_process_projector(url, nats_server.url) as running:
        await wait_folded(log)
        expected = reference(events)
        found = profiles(url)
        assert {u: (s, c) for u, (s, c, _p) in found.items()} == {
            key[1]: (user.state, user.event_count) for key, user in expected.users.items()
        }
        for user, (_s, _c, partition) in found.items():
            assert partition == partition_of("app", user, P)
        published = [c for c in expected.drain().changes if c.published]
        received = await read_all(running.nats_url, running.streams, expect=len(published))
    ids = [r.msg_id for r in received]
    assert len(ids) == len(set(ids)) == len(published)
    per_user: dict[str, list[int]] = {}
    for r in received:
        per_user.setdefault(r.header.user_id, []).append(r.header.user_sequence)
        assert decode_position(r.header.position)[0] == partition_of("app", r.header.user_id, P)
    assert all(seq == list(range(1, len(seq) + 1)) for seq in per_user.values())


async def test_two_workers_share_the_partitions_and_one_takes_all_when_the_other_stops(
    partitioned: tuple[str, PartitionedLog], nats_server: Any
) -> None:
    url, log = partitioned
    events = history(40, seed=2)
    half = len(events) // 2
    route(log, events[:half])
    streams = unique_streams()
    try:
        await _share(url, log, events, half, nats_server.url, streams)
    finally:
        await delete_stream(nats_server.url, streams)


async def _share(
    url: str,
    log: PartitionedLog,
    events: list[object],
    half: int,
    nats_url: str,
    streams: ChangeStreamSettings,
) -> None:
    async with in_process_projector(url, nats_url, streams=streams) as first:
        worker_a = first.app.worker
        assert worker_a is not None
        await _until(lambda: worker_a.held() == list(range(P)))
        async with in_process_projector(url, nats_url, streams=streams) as second:
            worker_b = second.app.worker
            assert worker_b is not None
            await _until(lambda: len(worker_a.held()) == len(worker_b.held()) == P // 2)
            assert sorted(worker_a.held() + worker_b.held()) == list(range(P))
            route(log, events[half:])
            await wait_folded(log)
        await _until(lambda: worker_a.held() == list(range(P)))
        expected = reference(events)
        assert {u: c for u, (_s, c, _p) in profiles(url).items()} == {
            key[1]: user.event_count for key, user in expected.users.items()
        }
        published = [c for c in expected.drain().changes if c.published]
        received = await read_all(nats_url, streams, expect=len(published))
    # Both workers published on the one stream: every change exactly once, each user's in
    # order (a stopped worker's unpublished rows went out with the partition's next holder).
    ids = [r.msg_id for r in received]
    assert len(ids) == len(set(ids))
    # (Change ids name positions, which differ from the one-log reference: compare what
    # each change is.)
    assert sorted((r.header.user_id, r.header.user_sequence) for r in received) == sorted(
        (c.user_id, c.sequence) for c in published
    )
    per_user: dict[str, list[int]] = {}
    for r in received:
        per_user.setdefault(r.header.user_id, []).append(r.header.user_sequence)
    assert all(seq == list(range(1, len(seq) + 1)) for seq in per_user.values())


async def _until(condition: Any, within: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.1)


async def test_segments_defined_in_partition_0_are_built_and_live_in_every_partition(
    partitioned: tuple[str, PartitionedLog], nats_server: Any
) -> None:
    """A definition saved in partition 0 reaches every partition (relayed), each builds its
    share from its own facts, and the members are those of one fold of the whole log."""
    url, log = partitioned
    events = segment_history(3)
    expected = segment_reference(events)
    route(log, events)
    save_segments(log.home, SEGMENTS)
    async with in_process_projector(url, nats_server.url):
        await wait_live(log, len(SEGMENTS))
        with psycopg.connect(url) as conn:
            live = set(conn.execute("SELECT segment_id, user_id FROM segment_members"))
            relayed = dict(
                conn.execute(
                    "SELECT partition, value FROM projector_meta WHERE name = 'relayed_through'"
                )
            )
    assert live == {(s, u.user_id) for u in expected.users.values() for s in u.memberships}
    assert len(live) > 20
    # Every other partition folded the copies of all of partition 0's definitions.
    others = {partition: through for partition, through in relayed.items() if partition}
    assert set(others) == set(range(1, P))
    assert len(set(others.values())) == 1
    assert next(iter(others.values())) > 0
