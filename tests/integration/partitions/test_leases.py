"""Leases on real PostgreSQL: one holder per partition, released at once when a worker dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psycopg
import pytest

from services.projector.partitions.leases import KEEPALIVE, LeaseLost, Leases


def test_a_partition_has_one_holder_until_released(database_url: str) -> None:
    a, b = Leases(database_url, "worker-a"), Leases(database_url, "worker-b")
    a.join()
    b.join()
    try:
        assert a.live_workers() == ["worker-a", "worker-b"]
        assert a.try_take(3)
        assert not b.try_take(3)
        a.release(3)
        assert b.try_take(3)
        assert b.held == {3}
    finally:
        a.leave()
        b.leave()


def test_every_worker_sees_which_partitions_are_held_by_anyone(database_url: str) -> None:
    a, b = Leases(database_url, "worker-a"), Leases(database_url, "worker-b")
    a.join()
    b.join()
    try:
        assert b.taken() == set()
        assert a.try_take(1) and a.try_take(4) and b.try_take(2)
        assert a.taken() == b.taken() == {1, 2, 4}
        a.leave()
        assert b.taken() == {2}
    finally:
        a.leave()
        b.leave()


def test_a_leaving_worker_is_no_longer_live_and_frees_its_partitions(database_url: str) -> None:
    a, b = Leases(database_url, "worker-a"), Leases(database_url, "worker-b")
    a.join()
    b.join()
    try:
        assert a.try_take(0) and a.try_take(1)
        a.leave()
        assert b.live_workers() == ["worker-b"]
        assert b.try_take(0) and b.try_take(1)
    finally:
        b.leave()


_HOLDER = """
import sys, time
from services.projector.partitions.leases import Leases
leases = Leases(sys.argv[1], "doomed")
leases.join()
assert leases.try_take(5)
print("holding", flush=True)
time.sleep(120)
"""


def test_a_killed_worker_frees_its_partitions_at_once(database_url: str) -> None:
    """SIGKILL closes the worker's connection: its presence and its leases go with it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, database_url],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    survivor = Leases(database_url, "survivor")
    survivor.join()
    try:
        assert holder.stdout is not None
        assert any(line.strip() == "holding" for line in iter(holder.stdout.readline, ""))
        assert survivor.live_workers() == ["doomed", "survivor"]
        assert not survivor.try_take(5)
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        deadline = time.monotonic() + 30
        while survivor.live_workers() != ["survivor"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert survivor.live_workers() == ["survivor"]
        assert survivor.try_take(5)
    finally:
        holder.kill()
        survivor.leave()


def test_a_broken_lease_connection_is_a_lost_lease(database_url: str) -> None:
    leases = Leases(database_url, "fragile")
    leases.join()
    assert leases.try_take(2)
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    with pytest.raises(LeaseLost):
        leases.try_take(3)
    assert leases.held == set()
    leases.join()  # it can come back and take partitions again
    try:
        assert leases.try_take(2)
    finally:
        leases.leave()


def test_the_server_finds_a_vanished_worker_s_lease_connection_dead_in_seconds(
    database_url: str,
) -> None:
    """The lease connection asks the server for TCP keepalives, so the locks of a worker
    whose host is gone (no FIN, no RST) go in about 25 s, not in the kernel's two hours."""
    leases = Leases(database_url, "worker-a")
    leases.join()
    try:
        conn = leases._connection()
        for setting, value in KEEPALIVE.items():
            assert conn.execute(f"SHOW {setting}").fetchone() == (str(value),)
    finally:
        leases.leave()
