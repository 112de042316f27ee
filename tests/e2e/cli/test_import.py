"""`cohortflow import`: good lines stored, every bad line named, re-imports all DUPLICATE."""

from __future__ import annotations

import codecs
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
        if line.startswith(f"{path}:") and not line.startswith(f"{path}:6:")
    )
    assert problems == [
        f"{path}:3: name: '$bogus' is not a system event; names starting"
        " with '$' are reserved ($account_closed, $app_installed, $app_opened,"
        f" $app_uninstalled, $session_started, $unsubscribed_all) (event_id {tag}-3)",
        f"{path}:4: context.location.latitude: must be between -90 and 90 degrees"
        f" (event_id {tag}-4)",
        f"{path}:5: user_id: user_id or anonymous_id is required (event_id {tag}-5)",
    ]
    assert "Traceback" not in first.stderr
    assert f"{path}:6: not valid JSON (" in first.stderr
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


def _line(tag: str, n: int, **extra: object) -> bytes:
    fields = {"event_id": f"{tag}-{n}", "user_id": f"{tag}-u", "name": "App Opened", **extra}
    return json.dumps(fields).encode()


def test_a_hostile_jsonl_file_imports_every_good_line_and_names_every_bad_one(
    suite: Suite,
) -> None:
    tag = uuid.uuid4().hex[:8]
    deep = b"[" * 2000 + b"]" * 2000
    lines = [
        codecs.BOM_UTF8 + _line(tag, 1) + b"\r",  # a BOM, and CRLF line endings
        _line(tag, 2).replace(b"App", b"Caf\xe9"),  # latin-1, not UTF-8
        _line(tag, 3).replace(b"App", b"A\x00pp"),  # a raw NUL byte
        _line(tag, 4, properties={"sku": "a\u0000b"}),  # a NUL escape
        _line(tag, 5)[:-1] + b', "properties": {"deep": ' + deep + b"}}",  # 2,000 deep
        _line(tag, 6, properties={"blob": "x" * (2 * 1024 * 1024)}),  # over the 1 MiB limit
        _line(tag, 7) + b"\r",
        b"   \r",  # blank
        _line(tag, 9, properties={"note": "fine \u00e9\u4e2d"}),
    ]
    path = suite.workdir / f"{tag}.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    result = suite.cli("import", str(path))
    assert result.returncode == 1
    assert summary_of(result) == {
        "read": 8,
        "accepted": 3,
        "duplicate": 0,
        "rejected": 0,
        "unreadable": 5,
    }
    reported = [line for line in result.stderr.splitlines() if line.startswith(f"{path}:")]
    latin, nul = lines[1].index(b"\xe9") + 1, lines[2].index(b"\x00") + 1
    assert reported[:3] == [
        f"{path}:2: not UTF-8 text (byte 0xe9 at byte {latin} of the line)",
        f"{path}:3: holds a NUL byte (at byte {nul} of the line)",
        f'{path}:4: properties["sku"]: holds a NUL character (\\u0000)',
    ]
    assert reported[3].startswith(f"{path}:5: not valid JSON (depth limit exceeded at column ")
    assert reported[4].startswith(f"{path}:6: longer than the limit of 1,048,576 bytes (")
    assert len(reported) == 5 and "Traceback" not in result.stderr
    # Nothing of a bad line is stored; every good one is, once.
    assert stored_ids(suite.database_url, tag) == {f"{tag}-1", f"{tag}-7", f"{tag}-9"}


def test_a_hostile_csv_file_imports_every_good_row_and_names_every_bad_one(
    suite: Suite,
) -> None:
    tag = uuid.uuid4().hex[:8]
    rows = [
        codecs.BOM_UTF8 + b"event_id,user_id,name,prop.n:number\r",
        f"{tag}-2,{tag}-u,App Opened,1\r".encode(),
        f"{tag}-3,{tag}-u\r".encode(),  # too few cells
        f"{tag}-4,{tag}-u,App Opened,1,surplus\r".encode(),  # too many
        f"{tag}-5,{tag}-u,Caf\xe9,1\r".encode("latin-1"),  # not UTF-8
        f"{tag}-6,{tag}-u,App Opened,many\r".encode(),  # not a number
        f'{tag}-7,{tag}-u,"App\r\nOpened",2\r'.encode(),  # a quoted cell over two lines
        f"{tag}-9,{tag}-u,App Opened,3\r".encode(),
        f'{tag}-10,{tag}-u,"never closed,4\r'.encode(),  # a quote open to the end
        f"{tag}-11,{tag}-u,App Opened,5\r".encode(),  # inside that quote
    ]
    path = suite.workdir / f"{tag}.csv"
    path.write_bytes(b"\n".join(rows) + b"\n")

    result = suite.cli("import", str(path))
    assert result.returncode == 1
    reported = [line for line in result.stderr.splitlines() if line.startswith(f"{path}:")]
    latin = rows[4].index(b"\xe9") + 1
    expected = {
        f"{path}:3: has 2 cells, the header has 4",
        f"{path}:4: has 5 cells, the header has 4",
        f"{path}:5: not UTF-8 text (byte 0xe9 at byte {latin} of the line)",
        f"{path}:6: prop.n:number: 'many' is not a number",
        f"{path}:10: not valid CSV (unexpected end of data) (the row of lines 10-11)",
    }
    # Ingest refuses the name with a line break in it (rows 7-8): reported, with the event id.
    (refused,) = set(reported) - expected
    assert refused.startswith(f"{path}:7: name: ") and refused.endswith(f"(event_id {tag}-7)")
    assert set(reported) - {refused} == expected
    assert summary_of(result) == {
        "read": 8,
        "accepted": 2,
        "duplicate": 0,
        "rejected": 1,
        "unreadable": 5,
    }
    assert stored_ids(suite.database_url, tag) == {f"{tag}-2", f"{tag}-9"}
