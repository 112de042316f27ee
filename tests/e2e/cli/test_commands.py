"""track, identify, profile, timeline, lifecycle; and failures as one line with an exit code."""

from __future__ import annotations

import json
import uuid

import pytest

from services.devstack.embedded import free_port
from tests.support.cli import Suite

pytestmark = pytest.mark.e2e


def test_track_identify_then_read_the_profile_and_timeline(suite: Suite) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    tracked = suite.cli(
        "track",
        user,
        "Order Completed",
        "-p",
        "revenue=49.9",
        "-p",
        'sku:="007"',
        "--event-id",
        f"{user}-o1",
    )
    assert tracked.returncode == 0, tracked.stderr
    assert tracked.stdout.startswith(f"ACCEPTED event_id={user}-o1 position=")
    repeated = suite.cli("track", user, "Order Completed", "--event-id", f"{user}-o1")
    assert repeated.stdout.split()[:2] == ["DUPLICATE", f"event_id={user}-o1"]
    identified = suite.cli(
        "identify",
        user,
        "--email",
        f"{user}@example.com",
        "--consent",
        "email=granted",
        "--consent",
        "sms=denied",
        "--timezone",
        "Europe/Berlin",
        "--trait",
        "plan=premium",
        "--country",
        "DE",
        "--city",
        "Berlin",
    )
    assert identified.returncode == 0, identified.stderr
    position = identified.stdout.split("position=")[1].strip()

    shown = suite.cli("profile", user, "--min-position", position, "--json")
    assert shown.returncode == 0, shown.stderr
    profile = json.loads(shown.stdout)
    assert profile["user_id"] == user
    assert profile["email"] == f"{user}@example.com"
    assert profile["consents"] == {"email": True, "sms": False}
    assert profile["traits"]["plan"] == {"string_value": "premium"}
    assert profile["event_counts"] == {"Order Completed": "1"}
    assert profile["lifecycle_state"] == "LIFECYCLE_STATE_NEW"

    panel = suite.cli("profile", user, "--min-position", position)
    assert user in panel.stdout and "email granted, sms denied" in panel.stdout
    assert "Berlin, DE, Europe/Berlin" in panel.stdout and "plan=premium" in panel.stdout

    timeline = suite.cli("timeline", user, "--min-position", position)
    assert timeline.returncode == 0, timeline.stderr
    assert "none -> new" in timeline.stdout and "event: Order Completed" in timeline.stdout
    summary = suite.cli("lifecycle", "--min-position", position, "--json")
    counts = {c["state"]: int(c.get("users", 0)) for c in json.loads(summary.stdout)["counts"]}
    assert counts["LIFECYCLE_STATE_NEW"] >= 1

    missing = suite.cli("profile", f"{user}-nobody")
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        f"error: projector at {suite.projector} answered NOT_FOUND: no user"
        f" '{user}-nobody' in this app"
    )


def test_failures_are_one_line_with_the_right_exit_code(suite: Suite) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    refused = suite.cli("--ingest", nowhere, "track", "u1", "Opened")
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        f"error: cannot reach ingest at {nowhere} (connection refused); is the suite running?"
        " `make run` starts it"
    ]
    bad_key = suite.cli("lifecycle", COHORTFLOW_API_KEY="wrong")
    assert bad_key.returncode == 1
    assert bad_key.stderr.splitlines() == [
        f"error: projector at {suite.projector} answered UNAUTHENTICATED: unknown API key"
    ]
    invalid = suite.cli("track", "u1", "$nope")
    assert invalid.returncode == 1 and len(invalid.stderr.splitlines()) == 1
    assert "INVALID_ARGUMENT: event.name: '$nope' is not a system event" in invalid.stderr
    usage = suite.cli("track", "u1", "Opened", "--prop", "novalue")
    assert usage.returncode == 2 and "not key=value" in usage.stderr
    for result in (refused, bad_key, invalid, usage):
        assert "Traceback" not in result.stderr
