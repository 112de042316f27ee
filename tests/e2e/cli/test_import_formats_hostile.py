"""Hostile export files through the real CLI and ingest: every bad line named, none stored.

For each format a file mixing good lines with NUL characters, raw NUL bytes, random bytes,
deep nesting, a 2 MiB line, wrong types, calls cohortflow cannot hold and values ingest
refuses; lines that look like different formats; a damaged gzip file.
"""

from __future__ import annotations

import gzip
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from services.eventlog.events import UserIdentified
from tests.support.cli import Suite, stored_ids, summary_of
from tests.support.eventlog import stored_events

pytestmark = pytest.mark.e2e

RANDOM = bytes(b for b in os.urandom(400) if b not in b"\n\r") or b"\xff"


def _write(suite: Suite, name: str, lines: list[bytes | dict[str, Any]]) -> Path:
    path = suite.workdir / name
    path.write_bytes(
        b"".join(
            (json.dumps(line).encode() if isinstance(line, dict) else line) + b"\n"
            for line in lines
        )
    )
    return path


def _reported(result: Any, path: Path) -> dict[int, str]:
    found = {}
    for line in result.stderr.splitlines():
        if line.startswith(f"{path}:"):
            number, _, rest = line.removeprefix(f"{path}:").partition(": ")
            found[int(number)] = rest
    return found


def _deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels):
        value = {"k": value}
    return value


def test_a_hostile_segment_file_stores_only_its_good_lines(suite: Suite) -> None:
    tag = uuid.uuid4().hex[:8]

    def track(n: int, **fields: Any) -> dict[str, Any]:
        return {
            "type": "track",
            "messageId": f"{tag}-{n}",
            "userId": f"{tag}-u",
            "event": "E",
        } | fields

    lines: list[bytes | dict[str, Any]] = [
        track(1, properties={"sku": "A-1"}),
        track(2, properties={"sku": "a\u0000b"}),
        json.dumps(track(3)).replace("E", "E\x00").encode(),
        track(4, type="tarck"),
        track(5, properties={"deep": _deep(20)}),
        json.dumps(track(6, properties={"blob": "x" * (2 * 1024 * 1024)})).encode(),
        RANDOM,
        {
            "type": "identify",
            "messageId": f"{tag}-8",
            "userId": f"{tag}-u",
            "context": {"timezone": "Mars/Base"},
        },
        track(9, anonymousId=f"{tag}-anon", context={"locale": "english!!"}),
        track(10, userId=7.5e300, properties=[]),
        {
            "type": "identify",
            "messageId": f"{tag}-11",
            "userId": f"{tag}-u",
            "traits": {"plan": "pro"},
        },
    ]
    path = _write(suite, f"{tag}.jsonl", lines)

    result = suite.cli("import", str(path), "--from", "segment")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    reported = _reported(result, path)
    assert reported.pop(2) == "properties.sku: holds a NUL character (\\u0000)"
    assert reported.pop(3).startswith("holds a NUL byte (at byte ")
    assert reported.pop(4).startswith("type: 'tarck' is not a Segment call; expected one of (")
    assert reported.pop(5) == "properties.deep.k.k.k.k.k.k.k: nests objects more than 8 deep"
    assert reported.pop(6).startswith("longer than the limit of 1,048,576 bytes (")
    assert reported.pop(7).startswith(("not UTF-8 text", "not valid JSON", "holds a NUL byte"))
    assert reported.pop(8) == f"timezone: unknown IANA time zone 'Mars/Base' (event_id {tag}-8)"
    assert reported.pop(9).startswith("context.locale: must be a BCP 47 language tag")
    assert reported.pop(10) == "properties: must be an object, got a list"
    assert reported == {}
    assert summary_of(result) == {
        "read": 11,
        "accepted": 2,
        "duplicate": 0,
        "rejected": 2,
        "unreadable": 7,
    }
    assert stored_ids(suite.database_url, tag) == {f"{tag}-1", f"{tag}-11"}
    # The rejected event's line left no link of its ids either.
    assert not [
        e
        for e in stored_events(suite.database_url)
        if isinstance(e, UserIdentified) and e.anonymous_id == f"{tag}-anon"
    ]


def test_hostile_mixpanel_and_amplitude_files_name_each_bad_field(suite: Suite) -> None:
    tag = uuid.uuid4().hex[:8]

    def mp(n: int, name: str = "E", **properties: Any) -> dict[str, Any]:
        base = {"time": 1791446112, "distinct_id": f"{tag}-u", "$insert_id": f"{tag}-{n}"}
        return {"event": name, "properties": base | properties}

    mixpanel = _write(
        suite,
        f"{tag}-mp.jsonl",
        [
            mp(1, **{"Plan Type": "pro"}),
            mp(2, "$merge", **{"$distinct_ids": ["a", "b"]}),
            mp(3, time="noon"),
            mp(4, time=1e300),
            mp(5, distinct_id={"id": 1}),
            RANDOM,
            mp(7, "[]"),
            mp(8, **{"$latitude": 1}),
        ],
    )
    result = suite.cli("import", str(mixpanel), "--from", "mixpanel")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    reported = _reported(result, mixpanel)
    assert reported.pop(2).startswith("event: $merge joins two ids that may both be users;")
    assert reported.pop(3) == "properties.time: 'noon' is not a number"
    assert reported.pop(4) == "properties.time: is not a time in seconds or milliseconds since 1970"
    assert reported.pop(5) == "properties.distinct_id: must be a string, got an object"
    assert reported.pop(6)
    assert reported.pop(7) == "event: '[]' has no letter or digit to name an event by"
    assert reported.pop(8) == "properties.$longitude: is needed with properties.$latitude"
    assert reported == {}
    events = stored_events(suite.database_url)
    (kept,) = [e for e in events if getattr(e, "user_id", "") == f"{tag}-u"]
    assert kept.properties == {"Plan_Type": "pro"}  # type: ignore[union-attr]

    def amp(n: int, **fields: Any) -> dict[str, Any]:
        return {
            "event_type": "E",
            "user_id": f"{tag}-amp",
            "uuid": f"{tag}-a{n}",
            "event_time": "2026-11-01 10:00:00.000000",
        } | fields

    amplitude = _write(
        suite,
        f"{tag}-amp.json",
        [
            amp(1),
            amp(2, event_type="$groupidentify"),
            amp(3, location_lat=95, location_lng=0),
            amp(4, event_time="2026-11-31 10:00:00"),
            amp(5, event_type="$identify", user_properties={"$set": ["x"]}),
            amp(6, event_type="$identify", user_properties={"$set": {"plan": "pro"}}),
            amp(7, event_time="1999-12-31 23:59:59"),
        ],
    )
    result = suite.cli("import", str(amplitude))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "read as Amplitude export lines (told from its first lines" in result.stdout
    reported = _reported(result, amplitude)
    assert reported.pop(2).startswith("event_type: $groupidentify sets properties of a group")
    assert reported.pop(3) == "location_lat: must be between -90 and 90 degrees"
    assert reported.pop(4) == "event_time: '2026-11-31 10:00:00' is not an ISO-8601 date-time"
    assert reported.pop(5) == "user_properties.$set: must be an object, got a list"
    assert reported.pop(7).startswith("event_time: is before 2000-01-01 or more than")
    assert reported == {}
    assert stored_ids(suite.database_url, f"{tag}-a") == {f"{tag}-a1", f"{tag}-a6"}


def test_lines_of_different_formats_stop_the_import_and_say_why(suite: Suite) -> None:
    tag = uuid.uuid4().hex[:8]
    path = _write(
        suite,
        f"{tag}.jsonl",
        [
            {"type": "track", "messageId": f"{tag}-1", "userId": "u", "event": "E"},
            {
                "event": "E",
                "properties": {"time": 1791446112, "distinct_id": "u", "$insert_id": f"{tag}-2"},
            },
        ],
    )
    result = suite.cli("import", str(path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"error: {path}:1: cannot tell the format: the lines look like different formats:"
        " line 1 like segment (type 'track', messageId, userId), line 2 like mixpanel (only"
        " event and properties, properties.time, properties.distinct_id,"
        " properties.$insert_id); pass one of --from cohortflow, --from segment,"
        " --from mixpanel, --from amplitude"
    )
    assert stored_ids(suite.database_url, tag) == set()


def test_a_damaged_gzip_file_and_from_on_a_csv_are_refused_plainly(suite: Suite) -> None:
    tag = uuid.uuid4().hex[:8]
    good = json.dumps({"type": "track", "messageId": f"{tag}-1", "userId": "u", "event": "E"})
    damaged = suite.workdir / f"{tag}.jsonl.gz"
    damaged.write_bytes(gzip.compress((good + "\n").encode())[:-12] + b"\x00" * 12)
    result = suite.cli("import", str(damaged), "--from", "segment")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{damaged}:" in result.stderr and "not a readable gzip file (" in result.stderr

    csv = suite.workdir / f"{tag}.csv"
    csv.write_text("event_id,user_id,name\ne1,u,E\n")
    refused = suite.cli("import", str(csv), "--from", "segment")
    assert refused.returncode == 2 and "--from reads JSON lines" in refused.stderr
