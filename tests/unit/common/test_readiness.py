"""Readiness checks: down only after several failures in a row, up at the first success;
the periodic probe counts a probe over its deadline as a failure."""

from __future__ import annotations

import asyncio

import pytest

from services.common.probes import watch
from services.common.readiness import CHECK_UP, Check
from services.eventlog.partitions import Deployment
from services.ingest.bootstrap import database_checks


def test_a_check_trips_after_failures_in_a_row_and_recovers_at_one_success() -> None:
    changes: list[bool] = []
    check = Check("unit-flaps", trip_after=3)
    check.listen(lambda: changes.append(check.up))
    check.failed(OSError("refused"))
    check.failed(OSError("refused"))
    check.passed()  # a success in between: the count starts again
    check.failed(OSError("refused"))
    check.failed(OSError("refused"))
    assert check.up and changes == []
    check.failed(TimeoutError())
    assert not check.up and changes == [False]
    assert check.last_error == "TimeoutError"
    assert CHECK_UP.labels("unit-flaps")._value.get() == 0
    check.failed(OSError("still refused"))
    assert changes == [False]  # told once
    check.passed()
    assert check.up and changes == [False, True]
    assert CHECK_UP.labels("unit-flaps")._value.get() == 1


def test_a_check_needs_at_least_one_failure_to_trip() -> None:
    with pytest.raises(ValueError, match="trip_after"):
        Check("unit-never", trip_after=0)


async def test_one_slow_probe_does_not_flip_the_check_two_in_a_row_do() -> None:
    # Each probe answers at once or never (it is cut off by the 1 s deadline).
    answers = [True, False, True, True, False, False, True]
    seen: list[bool] = []
    check = Check("unit-slow", trip_after=2)
    check.listen(lambda: seen.append(check.up))
    stop = asyncio.Event()

    async def probe() -> None:
        answers_now = answers.pop(0)
        if not answers:
            stop.set()  # the watch ends after reporting this last one
        if not answers_now:
            await asyncio.Event().wait()  # hangs: only the deadline ends it

    await watch(check, probe, stop, interval_s=0.001, timeout_s=1.0)
    # The single slow probe (2nd) changed nothing; the two slow ones (5th, 6th) took it
    # down, and the next one that answered brought it back.
    assert seen == [False, True]
    assert "TimeoutError" in check.last_error


def test_a_check_that_starts_unknown_is_down_until_its_first_success() -> None:
    check = Check("unit-unknown", trip_after=3, up=False)
    assert not check.up and CHECK_UP.labels("unit-unknown")._value.get() == 0
    check.failed(OSError("refused"))
    assert not check.up
    check.passed()
    assert check.up and CHECK_UP.labels("unit-unknown")._value.get() == 1


def test_ingest_judges_each_database_it_writes_to_on_its_own() -> None:
    home, other = "postgresql://db0/cf", "postgresql://db1/cf"
    deployment = Deployment(4, (home, home, other, other), home)
    checks = database_checks(deployment, failures=2)
    assert {url: c.name for url, c in checks.items()} == {home: "database", other: "database-2"}
    assert all(c.trip_after == 2 for c in checks.values())
    # Partitions elsewhere while the home database (history jobs, links) holds none.
    apart = database_checks(Deployment(2, (other, other), home), failures=3)
    assert {url: c.name for url, c in apart.items()} == {home: "database", other: "database-0"}
