"""`cohortflow import` of the exports users migrate from: Segment, Mixpanel, Amplitude.

Each sample file in deploy/examples/import/ is shaped like the tool's real export. Imported
through the real CLI and ingest, its events show up in the profiles the projector keeps,
identities are joined (an alias or a device seen with a user folds the anonymous history
into that user), and importing the file again is all DUPLICATE.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.eventlog.events import UserIdentified
from tests.support.cli import Suite, summary_of
from tests.support.eventlog import stored_events, stored_rows

pytestmark = pytest.mark.e2e

SAMPLES = Path(__file__).resolve().parents[3] / "deploy" / "examples" / "import"


def _last_position(suite: Suite) -> str:
    return str(stored_rows(suite.database_url)[-1][0])


def _read(suite: Suite, command: str, user: str, position: str) -> dict[str, Any]:
    """`cohortflow COMMAND USER --json` once the projector has folded `position` (each try
    waits up to PROJECTOR_READ_WAIT_S; a machine under load may need a few)."""
    for _ in range(6):
        shown = suite.cli(command, user, "--min-position", position, "--json")
        if "not yet" not in shown.stderr:
            break
    assert shown.returncode == 0, shown.stderr
    found: dict[str, Any] = json.loads(shown.stdout)
    return found


def _profile(suite: Suite, user: str, position: str) -> dict[str, Any]:
    return _read(suite, "profile", user, position)


def _counts(profile: dict[str, Any]) -> dict[str, int]:
    return {name: int(count) for name, count in profile.get("event_counts", {}).items()}


def _import(suite: Suite, path: Path, *options: str) -> subprocess.CompletedProcess:
    result = suite.cli("import", str(path), *options)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def _stored_events(suite: Suite) -> int:
    """How many events and profile updates the log holds (not the projector's clock ticks)."""
    return sum(1 for e in stored_events(suite.database_url) if hasattr(e, "event_id"))


def _first_import(suite: Suite, path: Path, lines: int, *options: str) -> tuple[str, str]:
    """Import a sample for the first time: every line accepted; (stdout, last position)."""
    first = _import(suite, path, *options)
    assert first.returncode == 0, first.stderr
    assert summary_of(first)["accepted"] == lines
    return first.stdout, _last_position(suite)


def _all_duplicate_again(suite: Suite, path: Path, lines: int, told: str) -> None:
    """The same file once more, format told from its lines: nothing new is stored."""
    before = _stored_events(suite)
    again = _import(suite, path)
    assert again.returncode == 0, again.stderr
    assert summary_of(again) == {
        "read": lines,
        "accepted": 0,
        "duplicate": lines,
        "rejected": 0,
        "unreadable": 0,
    }
    assert f"read as {told} (told from its first lines" in again.stdout
    assert _stored_events(suite) == before


def test_a_segment_archive_becomes_profiles_with_the_anonymous_history_joined(
    suite: Suite,
) -> None:
    path = suite.workdir / "segment.jsonl"
    shutil.copy(SAMPLES / "segment.jsonl", path)

    _, position = _first_import(suite, path, 11, "--from", "segment")

    ada = _profile(suite, "seg-user-ada", position)
    # The page view and product view were anonymous; identify joined them to Ada.
    assert _counts(ada) == {
        "Page Viewed": 1,
        "Product Viewed": 1,
        "Order Completed": 1,
        "Screen Viewed": 1,
    }
    assert ada["email"] == "ada@example.com" and ada["phone"] == "+4915123456789"
    assert ada["traits"]["plan"] == {"string_value": "premium"}
    assert ada["traits"]["address.postalCode"] == {"string_value": "10115"}
    assert ada["traits"]["group.name"] == {"string_value": "Acme Running Club"}
    assert ada["traits"]["group_id"] == {"string_value": "org-acme"}
    assert ada["timezone"] == "Europe/Berlin" and ada["city"] == "Berlin"

    # Bob's anonymous product view and sign-up were joined to him by `alias`.
    bob = _profile(suite, "seg-user-bob", position)
    assert _counts(bob) == {"Product Viewed": 1, "Signed Up": 1, "$app_installed": 1}
    assert bob["email"] == "bob@example.com"
    assert bob["traits"]["phone"] == {"string_value": "06 12 34 56 78"}  # not E.164
    assert "phone" not in bob

    stored = {getattr(e, "event_id", ""): e for e in stored_events(suite.database_url)}
    order = stored["ajs-next-4d0f6b2c5e7a9c1d3f4b6c8e0a2d3f5b"]
    assert order.properties["revenue"] == 89.9  # type: ignore[union-attr]
    assert order.context["country"] == "DE"  # type: ignore[union-attr]
    alias = stored["ajs-next-8b4d0f6a9c1e3a5b7d8f0a2c4e6b7d9f"]
    assert isinstance(alias, UserIdentified) and alias.user_id == "seg-user-bob"

    _all_duplicate_again(suite, path, 11, "Segment calls")


def test_a_mixpanel_export_joins_devices_to_users_by_each_id_merge(suite: Suite) -> None:
    path = suite.workdir / "mixpanel.jsonl"
    shutil.copy(SAMPLES / "mixpanel.jsonl", path)

    _, position = _first_import(suite, path, 11, "--from", "mixpanel")

    # Simplified ID Merge: an event with $device_id and $user_id joined the device.
    cleo = _profile(suite, "mp-user-cleo", position)
    assert _counts(cleo) == {
        "Page Viewed": 1,
        "Product Viewed": 1,
        "Sign Up": 1,
        "Order Completed": 1,
    }
    # Original ID Merge: $identify joined the anonymous install; $create_alias a device.
    dara = _profile(suite, "mp-user-dara", position)
    assert _counts(dara) == {"$app_installed": 1, "Product Viewed": 1, "Order Completed": 1}
    emil = _profile(suite, "mp-user-emil", position)
    assert _counts(emil) == {"Pricing Viewed": 1, "Plan Upgraded": 1}

    signup = next(
        e
        for e in stored_events(suite.database_url)
        if getattr(e, "name", "") == "Sign Up" and e.user_id == "mp-user-cleo"
    )
    assert signup.properties["Plan_Type"] == "free"  # type: ignore[union-attr]
    assert "token" not in signup.properties  # type: ignore[union-attr]
    context = signup.context  # type: ignore[union-attr]
    assert (context["country"], context["city"], context["os"]) == ("FR", "Lyon", "Mac OS X")

    _all_duplicate_again(suite, path, 11, "Mixpanel export lines")
    piped = suite.cli("import", "-", "--from", "mixpanel", stdin=path.read_text())
    assert piped.returncode == 0, piped.stderr
    assert summary_of(piped)["duplicate"] == 11  # stdin: --from says JSON lines


def test_an_amplitude_export_imports_gzipped_and_told_from_its_lines(suite: Suite) -> None:
    path = suite.workdir / "amplitude.json.gz"
    path.write_bytes(gzip.compress((SAMPLES / "amplitude.json").read_bytes()))

    shown, position = _first_import(suite, path, 8)
    assert "read as Amplitude export lines (told from its first lines" in shown

    gus = _profile(suite, "amp-user-gus", position)
    assert _counts(gus) == {
        "$app_installed": 1,
        "$session_started": 1,
        "Product Viewed": 1,
        "Order Completed": 1,
    }
    assert gus["email"] == "gus@example.com"
    assert gus["traits"]["plan"] == {"string_value": "premium"}
    assert gus["traits"]["initial_utm_source"] == {"string_value": "instagram"}
    assert "logins" not in gus["traits"]  # $add has no cohortflow equivalent
    hana = _profile(suite, "amp-user-hana", position)
    assert _counts(hana) == {"Page Viewed": 1, "Search": 1, "Order Completed": 1}
    (search,) = [e for e in stored_events(suite.database_url) if getattr(e, "name", "") == "Search"]
    assert search.context["city"] == "Munich"  # type: ignore[union-attr]
    assert search.context["locale"] == "en-US"  # type: ignore[union-attr]

    _all_duplicate_again(suite, path, 8, "Amplitude export lines")
    plain = _import(suite, SAMPLES / "amplitude.json", "--from", "amplitude")
    assert summary_of(plain)["duplicate"] == 8


def test_fresh_events_of_each_format_move_the_lifecycle_caused_by_their_own_ids(
    suite: Suite,
) -> None:
    tag = uuid.uuid4().hex[:8]
    now = datetime.now(UTC) - timedelta(minutes=5)
    lines = {
        "segment": {
            "type": "track",
            "messageId": f"{tag}-seg",
            "userId": f"{tag}-s",
            "event": "Order Completed",
            "timestamp": now.isoformat().replace("+00:00", "Z"),
            "properties": {"revenue": 20},
        },
        "mixpanel": {
            "event": "Order Completed",
            "properties": {
                "time": int(now.timestamp() * 1000),
                "distinct_id": f"{tag}-m",
                "$insert_id": f"{tag}-mp",
                "revenue": 30,
            },
        },
        "amplitude": {
            "event_type": "Order Completed",
            "user_id": f"{tag}-a",
            "device_id": f"{tag}-device",
            "$insert_id": f"{tag}-amp",
            "event_time": now.strftime("%Y-%m-%d %H:%M:%S.%f"),
            "event_properties": {"revenue": 40},
        },
    }
    for name, line in lines.items():
        path = suite.workdir / f"{tag}-{name}.jsonl"
        path.write_text(json.dumps(line) + "\n")
        assert summary_of(_import(suite, path))["accepted"] == 1
    position = _last_position(suite)
    for user, cause in ((f"{tag}-s", f"{tag}-seg"), (f"{tag}-a", f"{tag}-amp"), (f"{tag}-m", "")):
        (entry, *_) = _read(suite, "timeline", user, position)["entries"]
        assert entry["lifecycle"]["to_state"] == "LIFECYCLE_STATE_NEW"
        assert entry["cause_event_name"] == "Order Completed"
        # Segment's messageId and Amplitude's insert id are the event ids; Mixpanel's is
        # a hash of its deduplication key.
        (cause_id,) = entry["cause_event_ids"]
        assert cause_id == cause if cause else cause_id.startswith("mp-")
