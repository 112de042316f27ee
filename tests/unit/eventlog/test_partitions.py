"""Partition routing, position tokens and placement: the stable, stored parts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.eventlog.partitions import (
    Deployment,
    PlacementError,
    decode_position,
    encode_position,
    log_name,
    parse_placement,
    partition_of,
    user_key,
)

HOME = "postgresql://postgres@127.0.0.1:5432/home"


def test_routing_is_fixed_forever() -> None:
    """The hash is part of the stored format (users are in their partition's log): these
    vectors, BLAKE2b-64 of "app, unit separator, key" modulo P, must never change."""
    assert [partition_of("shop", f"user-{i}", 8) for i in range(8)] == [0, 4, 5, 4, 4, 2, 2, 1]
    assert partition_of("demo", "alice", 8) == 0
    assert partition_of("demo", "anonymous:d-1", 64) == 39
    assert partition_of("demo", "bob", 1024) == 284
    assert partition_of("demo", "anything", 1) == 0


def test_users_spread_over_partitions() -> None:
    counts = [0] * 8
    for i in range(8000):
        counts[partition_of("shop", f"user-{i}", 8)] += 1
    assert min(counts) > 800 and max(counts) < 1200


def test_anonymous_users_have_their_own_key() -> None:
    assert user_key("alice", "d-1") == "alice"
    assert user_key("", "d-1") == "anonymous:d-1"


@given(st.integers(0, 1023), st.integers(0, 2**48 - 1))
def test_positions_name_their_partition(partition: int, notification_id: int) -> None:
    assert decode_position(encode_position(partition, notification_id)) == (
        partition,
        notification_id,
    )


def test_one_partition_keeps_todays_positions_and_table() -> None:
    assert encode_position(0, 12345) == 12345
    assert log_name(0, 1) == "cohortflow"
    assert log_name(3, 8) == "cohortflow_p3"


def test_placement_maps_partitions_and_ranges() -> None:
    urls = parse_placement('{"0-3": "postgresql://a/x", "6": "postgresql://b/y"}', 8, HOME)
    assert urls[:4] == ("postgresql://a/x",) * 4
    assert urls[4:6] == (HOME, HOME)
    assert urls[6] == "postgresql://b/y"
    assert parse_placement("", 2, HOME) == (HOME, HOME)
    deployment = Deployment(8, urls, HOME)
    assert deployment.databases() == [HOME, "postgresql://a/x", "postgresql://b/y"]
    assert deployment.partitions_in(HOME) == [4, 5, 7]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1]", "JSON object"),
        ("{bad", "not JSON"),
        ('{"0-9": "postgresql://a/x"}', "outside partitions 0..7"),
        ('{"x": "postgresql://a/x"}', "a partition or a range"),
        ('{"0-3": "postgresql://a/x", "2": "postgresql://b/y"}', "partition 2 twice"),
        ('{"1": ""}', "must be a database URL"),
    ],
)
def test_bad_placements_are_refused_naming_the_problem(text: str, message: str) -> None:
    with pytest.raises(PlacementError, match=message):
        parse_placement(text, 8, HOME)


def test_partition_counts_are_bounded() -> None:
    with pytest.raises(PlacementError, match="partitions must be"):
        Deployment(0, (), HOME)
