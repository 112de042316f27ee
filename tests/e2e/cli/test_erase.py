"""`cohortflow erase USER`: the user's profile loses its personal fields, the answer is
idempotent by request id, and bad input is one line naming the field."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.support.cli import Suite

pytestmark = pytest.mark.e2e


def test_erase_clears_the_profile_and_a_retry_answers_the_same(suite: Suite) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    identified = suite.cli(
        "identify", user, "--email", f"{user}@example.com", "--trait", "plan=premium"
    )
    assert identified.returncode == 0, identified.stderr
    erased = suite.cli("erase", user, "--requested-by", "ticket 42", "--request-id", f"{user}-r")
    assert erased.returncode == 0, erased.stderr
    assert erased.stdout.startswith(f"ERASED user={user} request_id={user}-r keys_destroyed=1")
    again = suite.cli("erase", user, "--requested-by", "ticket 42", "--request-id", f"{user}-r")
    assert again.stdout == erased.stdout
    position = erased.stdout.split("position=")[1].strip()
    shown = suite.cli("profile", user, "--min-position", position, "--json")
    assert shown.returncode == 0, shown.stderr
    profile = json.loads(shown.stdout)
    assert "email" not in profile and "traits" not in profile

    refused = suite.cli("erase", user, "--requested-by", "  ")
    assert refused.returncode == 1
    assert "requested_by" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
