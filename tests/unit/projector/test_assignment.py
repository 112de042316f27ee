"""Partition assignment: every worker computes the same, balanced split."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.projector.partitions.assignment import assigned


@given(st.integers(1, 64), st.sets(st.text(min_size=1, max_size=8), min_size=1, max_size=10))
def test_every_partition_has_exactly_one_worker_and_the_split_is_even(
    partitions: int, workers: set[str]
) -> None:
    shares = [assigned(partitions, workers, w) for w in sorted(workers)]
    every = [p for share in shares for p in share]
    assert sorted(every) == list(range(partitions))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_a_lone_worker_holds_everything_and_a_second_takes_half() -> None:
    assert assigned(8, ["a"], "a") == frozenset(range(8))
    assert assigned(8, ["a", "b"], "a") == frozenset({0, 2, 4, 6})
    assert assigned(8, ["a", "b"], "b") == frozenset({1, 3, 5, 7})
    assert assigned(8, [], "b") == frozenset(range(8))  # itself, even if not yet seen
