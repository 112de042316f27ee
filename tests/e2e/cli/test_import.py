"""`cohortflow import`: good lines stored, every bad line named, re-imports all DUPLICATE."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.support.cli import Suite, stored_ids, summary_of
from tests.support.eventlog import stored_events

pytestmark = pytest.mark.e2e


def test_import_stores_good_lines_and_names_each_bad_one(suite: Suite) -> None:
    tag = uuid.uuid4().hex[:8]
    lines = [
        {"event_id": f"{tag}-1", "user_id": f"{tag}-ann", "name": "App Opened"},
        {
            "event_id": f"{tag}-2",
            "user_id": f"{tag}-ann",
            "name": "Order Completed",
            "properties": {"revenue": 12.5},
            "context": {"country": "DE"},
        },
        {"event_id": f"{tag}-3", "user_id": f"{tag}-ann", "name": "$bogus"},
        {
            "event_id": f"{tag}-4",
            "user_id": f"{tag}-ann",
            "name": "Opened",
            "context": {"latitude": 95, "longitude": 0},
        },
        {"event_id": f"{tag}-5", "name": "Opened"},
    ]
    text = "\n".join(json.dumps(line) for line in lines) + "\nthis is not json\n"
    path = suite.workdir / f"{tag}.jsonl"
    path.write_text(text)

    first = suite.cli("import", str(path))
    assert first.returncode == 1
    assert summary_of(first) == {
        "read": 6,
        "accepted": 2,
        "duplicate": 0,
        "rejected": 3,
        "unreadable": 1,
    }
    problems = sorted(
        line
        for line in first.stderr.splitlines()
        if line.startswith("line ") and not line.startswith("line 6:")
    )
    assert problems == [
        f"line 3 (event_id {tag}-3): name: '$bogus' is not a system event; names starting"
        " with '$' are reserved ($account_closed, $app_installed, $app_opened,"
        " $app_uninstalled, $session_started, $unsubscribed_all)",
        f"line 4 (event_id {tag}-4): context.location.latitude: must be between -90 and 90 degrees",
        f"line 5 (event_id {tag}-5): user_id: user_id or anonymous_id is required",
    ]
    assert "Traceback" not in first.stderr
    assert "line 6: not valid JSON (" in first.stderr
    assert stored_ids(suite.database_url, tag) == {f"{tag}-1", f"{tag}-2"}
    (order,) = [
        e for e in stored_events(suite.database_url) if getattr(e, "event_id", "") == f"{tag}-2"
    ]
    assert order.properties == {"revenue": 12.5} and order.context["country"] == "DE"

    # The same file again: what was stored is DUPLICATE, nothing is stored twice.
    again = suite.cli("import", str(path))
    assert summary_of(again)["accepted"] == 0
    assert summary_of(again)["duplicate"] == 2
    assert stored_ids(suite.database_url, tag) == {f"{tag}-1", f"{tag}-2"}


def test_a_clean_csv_imports_then_reimports_as_all_duplicate(suite: Suite) -> None:
    tag = uuid.uuid4().hex[:8]
    rows = ["event_id,user_id,name,event_time,country,prop.revenue,prop.sku:string"]
    rows += [
        f"{tag}-{n},{tag}-u{n % 7},Order Completed,2025-01-0{1 + n % 9}T10:00:00Z,FR,{n}.5,00{n}"
        for n in range(2500)
    ]
    path = suite.workdir / f"{tag}.csv"
    path.write_text("\n".join(rows) + "\n")

    first = suite.cli("import", str(path), "--batch-size", "400", "--concurrency", "3")
    assert first.returncode == 0, first.stderr
    assert summary_of(first)["accepted"] == 2500
    again = suite.cli("import", "-", "--format", "csv", stdin=path.read_text())
    assert again.returncode == 0, again.stderr
    assert summary_of(again) == {
        "read": 2500,
        "accepted": 0,
        "duplicate": 2500,
        "rejected": 0,
        "unreadable": 0,
    }
    assert len(stored_ids(suite.database_url, tag)) == 2500
