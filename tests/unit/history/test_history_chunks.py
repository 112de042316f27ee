"""Chunks of a sorted history: bounded transactions, ticks in place, resumable cursors."""

from __future__ import annotations

import random
import uuid

from services.ingest.domain.history_chunks import (
    TICK_BYTES,
    AppendCursor,
    ChunkPlanner,
    Item,
    StagedRow,
)
from services.ingest.domain.history_clock import DAY_US, TRACK_RANK, history_ticks

MINUTE = 60_000_000
START = 1_735_689_600_000_000  # 2025-01-01T00:00:00Z


def rows(times: list[int], size: int = 200) -> list[StagedRow]:
    made = [
        StagedRow((t, TRACK_RANK, uuid.UUID(int=i)), f"u{i % 7}", "", size)
        for i, t in enumerate(times)
    ]
    return sorted(made, key=lambda r: r.key)


def by_user(partitions: int):  # type: ignore[no-untyped-def]
    return lambda row: int(row.user_id[1:]) % partitions


def plan_all(
    staged: list[StagedRow], partitions: int, **limits: int
) -> tuple[list[list[list[Item]]], AppendCursor]:
    """Every chunk's batches, planned from the cursor each time (as the appender does)."""
    cursor = AppendCursor()
    chunks = []
    for _ in range(10_000):
        planner = ChunkPlanner(cursor, partitions, by_user(partitions), **limits)
        remaining = [r for r in staged if cursor.after is None or r.key > cursor.after]
        for row in remaining:
            if not planner.offer(row):
                break
        else:
            if planner.end_of_history() and not planner.rows and not planner.ticks:
                return chunks, cursor
        chunks.append(planner.batches())
        cursor = planner.cursor
    raise AssertionError("did not end")


def test_one_partition_gets_the_events_in_order_with_every_tick_in_place() -> None:
    rng = random.Random(3)
    times = [START + rng.randrange(0, 3 * DAY_US) for _ in range(500)]
    staged = rows(times)
    chunks, _ = plan_all(staged, 1, max_events=64)
    sequence = [item for chunk in chunks for item in chunk[0]]
    assert [i for i in sequence if isinstance(i, StagedRow)] == staged
    assert [i for i in sequence if isinstance(i, int)] == history_ticks(times)
    for index, item in enumerate(sequence):
        if isinstance(item, int):
            before = [i.event_time_us for i in sequence[:index] if isinstance(i, StagedRow)]
            after = [i.event_time_us for i in sequence[index:] if isinstance(i, StagedRow)]
            assert all(t < item for t in before) and all(t >= item for t in after)
    assert all(len(chunk[0]) <= 64 for chunk in chunks)


def test_every_partition_gets_every_tick_and_only_its_users_events() -> None:
    rng = random.Random(5)
    times = [START + rng.randrange(0, DAY_US) for _ in range(300)]
    staged = rows(times)
    chunks, _ = plan_all(staged, 4, max_events=50)
    for partition in range(4):
        sequence = [item for chunk in chunks for item in chunk[partition]]
        assert [i for i in sequence if isinstance(i, int)] == history_ticks(times)
        mine = [r for r in staged if int(r.user_id[1:]) % 4 == partition]
        assert [i for i in sequence if isinstance(i, StagedRow)] == mine
        assert all(len(chunk[partition]) <= 50 for chunk in chunks)


def test_bytes_bound_each_transaction() -> None:
    staged = rows([START + i * MINUTE for i in range(100)], size=10_000)
    chunks, _ = plan_all(staged, 1, max_bytes=50_000)
    for chunk in chunks:
        size = sum(TICK_BYTES if isinstance(i, int) else i.size for i in chunk[0])
        assert size <= 50_000


def test_a_sparse_history_cuts_between_ticks_and_resumes_without_repeating_one() -> None:
    # Two events three years apart: about 1,100 midnights between them.
    times = [START, START + 3 * 365 * DAY_US]
    staged = rows(times)
    chunks, cursor = plan_all(staged, 2, max_events=100)
    assert len(chunks) > 10
    for partition in range(2):
        ticks = [i for chunk in chunks for i in chunk[partition] if isinstance(i, int)]
        assert ticks == history_ticks(times)
    assert cursor.after == staged[-1].key


def test_a_replanned_chunk_is_the_same_chunk() -> None:
    rng = random.Random(11)
    staged = rows([START + rng.randrange(0, DAY_US) for _ in range(200)])
    cursor = AppendCursor()
    for _ in range(3):
        plans = []
        for _attempt in range(2):
            planner = ChunkPlanner(cursor, 3, by_user(3), max_events=40)
            for row in staged:
                if (cursor.after is None or row.key > cursor.after) and not planner.offer(row):
                    break
            plans.append((planner.batches(), planner.cursor))
        assert plans[0] == plans[1]
        cursor = plans[0][1]
