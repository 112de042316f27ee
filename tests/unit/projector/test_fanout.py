"""Reads across databases: merging their answers gives one query's answer, a user's reads
go to their partition's database, and watch cursors name a change id per database."""

from __future__ import annotations

import threading
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.domain_errors import InvalidInput
from services.common.grpc.paging import encode_token
from services.eventlog.partitions import Deployment, parse_placement, partition_of
from services.projector.adapters.fanout import Fanout, first_page, summed
from services.projector.adapters.store import ProjectorStore
from services.projector.domain.segments.build_shares import combined_build
from services.projector.grpc.segment_membership import watch_cursor, watch_token

HOME, OTHER = "postgresql://h/home", "postgresql://o/other"


@given(
    st.sets(st.text(min_size=1, max_size=6), max_size=40),
    st.integers(min_value=1, max_value=4),
    st.integers(min_value=0, max_value=50),
    st.text(max_size=3),
)
def test_merged_pages_are_the_page_of_one_query(
    users: set[str], databases: int, limit: int, after: str
) -> None:
    # Each database answers its own first `limit` users after the cursor, in order.
    shares: list[list[str]] = [[] for _ in range(databases)]
    for user in users:
        shares[hash(user) % databases].append(user)
    pages = [sorted(u for u in share if u > after)[:limit] for share in shares]
    assert first_page(pages, str, limit) == sorted(u for u in users if u > after)[:limit]


def test_counts_add_up_per_key() -> None:
    assert summed([{"active": 2, "new": 1}, {}, {"active": 3, "churned": 1}]) == {
        "active": 5,
        "new": 1,
        "churned": 1,
    }


def _stores(names: list[str]) -> dict[str, ProjectorStore]:
    return {name: cast(ProjectorStore, object()) for name in names}


def test_a_users_reads_go_to_their_partitions_database_and_others_to_every_one() -> None:
    deployment = Deployment(8, parse_placement(f'{{"4-7": "{OTHER}"}}', 8, HOME), HOME)
    stores = _stores([HOME, OTHER])
    fan = Fanout(stores, deployment)
    try:
        for user in ("ada", "bob", "anonymous:dev-1", "cy"):
            partition = partition_of("app", user, 8)
            assert fan.of_user("app", user) is stores[HOME if partition < 4 else OTHER]
        assert fan.definitions is stores[HOME]
        threads: list[str] = []

        def where(store: Any) -> str:
            threads.append(threading.current_thread().name)
            return HOME if store is stores[HOME] else OTHER

        assert fan.each(where) == [HOME, OTHER]
        assert all(name.startswith("fanout") for name in threads)  # at once, off the caller
    finally:
        fan.close()


def test_one_database_is_queried_on_the_callers_thread() -> None:
    store = cast(ProjectorStore, object())
    fan = Fanout.of(store)
    assert fan.single and fan.of_user("app", "ada") is store
    assert fan.each(lambda _s: threading.current_thread().name) == [threading.current_thread().name]


def test_a_placement_without_a_store_for_a_database_is_refused() -> None:
    deployment = Deployment(2, (HOME, OTHER), HOME)
    with pytest.raises(ValueError, match="no store for database"):
        Fanout(_stores([HOME]), deployment)


def test_watch_cursors_carry_a_change_id_per_database() -> None:
    assert watch_cursor("", 1) == [0]
    assert watch_cursor(watch_token([7]), 1) == [7]
    assert watch_cursor("", 3) == [0, 0, 0]
    assert watch_cursor(watch_token([4, 0, 12]), 3) == [4, 0, 12]


@pytest.mark.parametrize(
    ("token", "databases"),
    [
        (watch_token([4, 5]), 1),  # another deployment's cursor
        (watch_token([4, 5]), 3),
        (watch_token([4]), 2),
        (encode_token({"ids": "4.x"}), 2),
        (encode_token({"ids": "4.-1"}), 2),
        ("not a token", 2),
    ],
)
def test_foreign_watch_cursors_are_refused_naming_the_field(token: str, databases: int) -> None:
    with pytest.raises(InvalidInput) as refused:
        watch_cursor(token, databases)
    assert [v.field for v in refused.value.problems] == ["after_cursor"]


def _share(status: str, done: int, finished: int | None, error: str = "") -> dict[str, Any]:
    return {
        "status": status,
        "events_done": done,
        "events_total": 10,
        "users": done // 2,
        "started_us": 100 + done,
        "finished_us": finished,
        "error": error,
    }


def test_a_build_adds_up_the_partitions_shares() -> None:
    stored, running = _share("stored", 10, 500), _share("running", 4, None)
    assert combined_build([]) is None
    assert combined_build([stored]) == stored
    both = combined_build([stored, running])
    assert both is not None
    assert (both["status"], both["events_done"], both["events_total"]) == ("running", 14, 20)
    assert (both["started_us"], both["finished_us"]) == (104, None)
    done = combined_build([stored, _share("stored", 8, 700)])
    assert done is not None and (done["status"], done["finished_us"]) == ("stored", 700)
    failed = combined_build([stored, _share("failed", 2, 300, "timeout")])
    assert failed is not None and (failed["status"], failed["error"]) == ("failed", "timeout")
