"""`cohortflow determinism`: what was published live equals a replay of the log."""

from __future__ import annotations

import re

import pytest

from tests.support.cli import Suite

pytestmark = pytest.mark.e2e


def test_simulated_traffic_replays_to_the_published_changes(suite: Suite) -> None:
    result = suite.cli(
        "determinism", "--users", "60", "--days", "10", "--seed", "11", **suite.stream_env()
    )
    assert result.returncode == 0, result.stdout + result.stderr
    found = re.search(r"identical: ([\d,]+) changes published live", result.stdout)
    assert found, result.stdout
    # Lifecycle, RFM and first-event changes of 60 new users at the very least.
    assert int(found.group(1).replace(",", "")) >= 60, result.stdout
    assert "simulated 60 users over 10 days (seed 11)" in result.stdout


def test_a_replay_under_other_policies_is_reported_different(suite: Suite) -> None:
    # The live projector runs the default policies; a replay where users stop being
    # new after one day instead of seven must not pass as the same history.
    result = suite.cli(
        "determinism",
        "--users",
        "30",
        "--days",
        "10",
        "--seed",
        "12",
        "--policies",
        '{"*": {"lifecycle": {"new_days": 1}}}',
        **suite.stream_env(),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: DIFFERENT: "), result.stderr
    assert "position" in line


def test_bad_policies_are_one_line(suite: Suite) -> None:
    result = suite.cli("determinism", "--policies", "[1]", **suite.stream_env())
    assert result.returncode == 2
    assert "expected a JSON object" in result.stderr
