"""`cohortflow import --history`: an unsorted file of past events through a history import
job, each bad line named and nothing of it stored, the log holding the history in time
order between the job's markers, and the same file again all DUPLICATE, appending nothing."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.eventlog.events import (
    AppClockTicked,
    ClockTicked,
    EventTracked,
    HistoryImportFinished,
    HistoryImportStarted,
    UserIdentified,
)
from services.eventlog.keyring import Keyring
from services.eventlog.sealing import unseal_all
from services.eventlog.store import open_event_log
from services.ingest.domain.history_clock import history_ticks
from tests.support.cli import Suite, summary_of

pytestmark = pytest.mark.e2e

BEGIN = datetime.now(UTC).replace(microsecond=0) - timedelta(days=90)


def _log(suite: Suite) -> list[Any]:
    log = open_event_log(suite.database_url, pool_size=1)
    try:
        notes = log.recorder.select_notifications(start=None, limit=1_000_000)
        keys = Keyring(log.log_recorder.datastore)
        return unseal_all([log.mapper.to_domain_event(n) for n in notes], keys)
    finally:
        log.close()


def _write(path: Path, lines: list[Any]) -> None:
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")


def _history(tag: str) -> list[dict[str, Any]]:
    rng = random.Random(tag)
    events = [
        {
            "event_id": f"{tag}-{i}",
            "user_id": f"{tag}-user-{i % 5}",
            "name": rng.choice(["App Opened", "Added to Cart", "Order Completed"]),
            "event_time": (BEGIN + timedelta(seconds=rng.randrange(0, 60 * 86_400))).isoformat(),
        }
        for i in range(60)
    ]
    rng.shuffle(events)
    return events


def _job_of(entries: list[Any], tag: str) -> str:
    (job,) = {e.history_job for e in entries if getattr(e, "event_id", "").startswith(tag)}
    return str(job)


def test_an_unsorted_file_imports_as_history_and_again_as_all_duplicate(suite: Suite) -> None:
    tag = uuid.uuid4().hex[:8]
    good = _history(tag)
    bad = [
        "this is not json",
        {
            "event_id": f"{tag}-b1",
            "user_id": f"{tag}-x",
            "name": "$bogus",
            "event_time": BEGIN.isoformat(),
        },
        {"event_id": f"{tag}-b2", "user_id": f"{tag}-x", "name": "Opened"},
        {
            "event_id": f"{tag}-b3",
            "user_id": f"{tag}-x",
            "name": "Opened",
            "event_time": (BEGIN - timedelta(days=9000)).isoformat(),
        },
    ]
    lines: list[Any] = [*good[:20], *bad[:2], *good[20:40], *bad[2:], *good[40:]]
    path = suite.workdir / f"{tag}-history.jsonl"
    _write(path, lines)

    first = suite.cli("import", "--history", str(path))
    assert first.returncode == 1, first.stderr
    assert "Traceback" not in first.stderr
    assert summary_of(first) == {
        "read": 64,
        "accepted": 60,
        "duplicate": 0,
        "rejected": 3,
        "unreadable": 1,
    }
    reported = sorted(line for line in first.stderr.splitlines() if line.startswith(f"{path}:"))
    assert reported[0].startswith(f"{path}:21: not valid JSON")
    assert reported[1:] == [
        f"{path}:22: name: '$bogus' is not a system event; names starting with '$' are"
        " reserved ($account_closed, $app_installed, $app_opened, $app_uninstalled,"
        f" $session_started, $unsubscribed_all) (event_id {tag}-b1)",
        f"{path}:43: event_time: is required in a history import: when it happened"
        f" (event_id {tag}-b2)",
        f"{path}:44: event_time: is before 2000-01-01 or more than 3650 days in the past"
        f" (event_id {tag}-b3)",
    ]
    assert "60 events appended to the log, folded by the projector" in first.stdout

    entries = _log(suite)
    job = _job_of(entries, tag)
    mine = [e for e in entries if getattr(e, "history_job", None) == job]
    assert sorted(e.event_id for e in mine) == sorted(e["event_id"] for e in good)
    assert not [e for e in entries if getattr(e, "event_id", "").startswith(f"{tag}-b")]
    # Between the job's markers: its events in time order, the app's ticks where the rule says.
    start = next(
        i for i, e in enumerate(entries) if isinstance(e, HistoryImportStarted) and e.job_id == job
    )
    end = next(
        i for i, e in enumerate(entries) if isinstance(e, HistoryImportFinished) and e.job_id == job
    )
    between = entries[start + 1 : end]
    times = [e.event_time_us for e in between if isinstance(e, EventTracked | UserIdentified)]
    assert times == sorted(times) and len(times) == 60
    ticks = [e.tick_time_us for e in between if isinstance(e, AppClockTicked)]
    assert ticks == history_ticks(times)

    # The same file again: every good line DUPLICATE, nothing new in the log.
    again = suite.cli("import", "--history", str(path))
    assert summary_of(again) == {
        "read": 64,
        "accepted": 0,
        "duplicate": 60,
        "rejected": 3,
        "unreadable": 1,
    }
    assert "nothing new to append" in again.stdout
    # (The live ticker may have added a ClockTicked meanwhile: that is the wall clock's.)
    assert _without_ticks(_log(suite)) == _without_ticks(entries)

    # Both jobs are listed; a done one cannot be cancelled.
    listed = suite.cli("history-imports", "--json")
    states = {j["job_id"]: j["state"] for j in json.loads(listed.stdout)["jobs"]}
    assert states[job] == "STATE_DONE" and len(states) >= 2
    refused = suite.cli("history-imports", "--cancel", job)
    assert refused.returncode == 1
    assert "FAILED_PRECONDITION" in refused.stderr and "only a staging job" in refused.stderr


def test_a_segment_export_imports_as_history_with_its_identities(suite: Suite) -> None:
    tag = uuid.uuid4().hex[:8]
    when = [(BEGIN + timedelta(days=d)).isoformat().replace("+00:00", "Z") for d in range(4)]
    lines = [
        {
            "type": "track",
            "event": "Order Completed",
            "userId": f"{tag}-ann",
            "anonymousId": f"{tag}-dev",
            "messageId": f"{tag}-m3",
            "timestamp": when[3],
            "properties": {"revenue": 20},
        },
        {
            "type": "identify",
            "userId": f"{tag}-ann",
            "messageId": f"{tag}-m1",
            "timestamp": when[1],
            "traits": {"email": f"{tag}@example.com", "plan": "pro"},
        },
        {
            "type": "track",
            "event": "App Opened",
            "anonymousId": f"{tag}-dev",
            "messageId": f"{tag}-m0",
            "timestamp": when[0],
        },
        # A track that also links a device: the event is too big, so neither is stored.
        {
            "type": "track",
            "event": "App Opened",
            "userId": f"{tag}-bob",
            "anonymousId": f"{tag}-dev2",
            "messageId": f"{tag}-m2",
            "timestamp": when[2],
            "properties": {"note": "x" * 2000},
        },
    ]
    path = suite.workdir / f"{tag}-segment.jsonl"
    _write(path, lines)
    result = suite.cli("import", "--history", str(path), "--from", "segment")
    assert result.returncode == 1, result.stderr
    assert summary_of(result)["accepted"] == 3 and summary_of(result)["rejected"] == 1
    reported = [line for line in result.stderr.splitlines() if line.startswith(f"{path}:")]
    assert reported == [
        f'{path}:4: properties["note"]: strings are at most 1024 characters (event_id {tag}-m2)'
    ], result.stderr
    entries = _log(suite)
    mine = [
        e
        for e in entries
        if isinstance(e, EventTracked | UserIdentified) and tag in e.user_id + e.anonymous_id
    ]
    assert {e.event_id for e in mine if isinstance(e, EventTracked)} == {f"{tag}-m0", f"{tag}-m3"}
    identified = [e for e in mine if isinstance(e, UserIdentified)]
    assert {e.event_id for e in identified if e.event_id.startswith(tag)} == {f"{tag}-m1"}
    # The link the track line implies is an Identify of the history too.
    assert any(e.anonymous_id == f"{tag}-dev" for e in identified)
    assert all(e.history_job for e in mine)
    assert not [e for e in mine if f"{tag}-dev2" in e.anonymous_id or f"{tag}-bob" in e.user_id]


def _without_ticks(entries: list[object]) -> list[object]:
    """The log without the live ticker's ClockTicked, which a minute boundary may add."""
    return [e for e in entries if not isinstance(e, ClockTicked)]
