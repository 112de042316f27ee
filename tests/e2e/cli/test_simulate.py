"""`cohortflow simulate` runs through ingest and, with the same seed, repeats as DUPLICATE."""

from __future__ import annotations

import json

import pytest

from tests.support.cli import Suite, stored_ids

pytestmark = pytest.mark.e2e


def test_a_simulation_runs_through_and_repeats_as_all_duplicate(suite: Suite) -> None:
    args = ("simulate", "--users", "200", "--days", "7", "--seed", "11", "--speed", "0", "--json")
    first = suite.cli(*args)
    assert first.returncode == 0, first.stderr
    run = json.loads(first.stdout)
    assert run["rejected"] == 0
    assert run["identifies"] > 100 and run["late_events"] > 0 and run["retried_events"] > 0
    assert run["accepted"] + run["duplicate"] == run["sent"]
    assert run["duplicate"] == run["retried_events"]
    stored = stored_ids(suite.database_url, run["id_prefix"])
    assert len(stored) == run["accepted"]

    second = json.loads(suite.cli(*args).stdout)
    assert (second["sent"], second["accepted"]) == (run["sent"], 0)
    assert second["duplicate"] == run["sent"]
    assert stored_ids(suite.database_url, run["id_prefix"]) == stored
