"""Hostile import files: every line is an event or a problem with its number, never dropped,
never the end of the file (invalid UTF-8, NUL, deep nesting, huge lines, BOMs, CRLF)."""

from __future__ import annotations

import codecs
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.cli.csv_rows import read_csv
from services.cli.lines import FileProblem, read_lines
from services.cli.records import LineProblem, Record, printable, read_jsonl

GOOD = b'{"event_id": "ok-%d", "user_id": "u", "name": "Opened"}'


def good(n: int) -> bytes:
    return GOOD % n


def jsonl(data: bytes, max_bytes: int = 1024 * 1024) -> list[Record | LineProblem]:
    return list(read_jsonl(read_lines(io.BytesIO(data), max_bytes)))


def csv_rows(data: bytes) -> list[Record | LineProblem]:
    return list(read_csv(read_lines(io.BytesIO(data))))


def reports(items: list[Record | LineProblem], source: str = "e.jsonl") -> list[str]:
    return [item.at(source) for item in items if isinstance(item, LineProblem)]


def imported(items: list[Record | LineProblem]) -> list[int]:
    return [item.line for item in items if isinstance(item, Record)]


def test_an_invalid_utf8_byte_is_one_bad_line_and_the_file_goes_on() -> None:
    items = jsonl(good(1) + b"\n" + b'{"name": "caf\xe9"}\n' + good(3) + b"\n")
    assert imported(items) == [1, 3]
    assert reports(items) == ["e.jsonl:2: not UTF-8 text (byte 0xe9 at byte 14 of the line)"]


def test_nul_bytes_and_nul_escapes_are_refused_naming_the_field() -> None:
    items = jsonl(
        b'{"event_id": "a", "user_id": "u\x00", "name": "Opened"}\n'
        b'{"event_id": "b", "user_id": "u\\u0000", "name": "Opened"}\n'
        b'{"event_id": "c", "user_id": "u", "name": "O", "properties": {"k": ["x", "y\\u0000"]}}\n'
        b'{"event_id": "d", "user_id": "u", "name": "O", "properties": {"k\\u0000": 1}}\n'
        b'{"event_id": "e", "user_id": "u", "name": "O", "context": {"city": "\\u0000"}}\n'
    )
    assert imported(items) == []
    assert reports(items) == [
        "e.jsonl:1: holds a NUL byte (at byte 32 of the line)",
        "e.jsonl:2: user_id: holds a NUL character (\\u0000)",
        'e.jsonl:3: properties["k"]: holds a NUL character (\\u0000)',
        'e.jsonl:4: properties["k\\x00"]: the key holds a NUL character (\\u0000)',
        "e.jsonl:5: context.city: holds a NUL character (\\u0000)",
    ]


@pytest.mark.parametrize("depth", [100, 1_000, 2_000, 100_000])
def test_a_deeply_nested_line_is_reported_not_read_as_nothing(depth: int) -> None:
    for nested in (b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth):
        line = b'{"event_id": "d", "user_id": "u", "name": "O", "properties": {"p": ' + nested
        items = jsonl(line + b"}}\n" + good(2) + b"\n")
        assert imported(items) == [2]
        (problem,) = reports(items)
        assert problem.startswith("e.jsonl:1: "), problem


def test_a_line_over_the_limit_is_skipped_without_reading_it_whole() -> None:
    huge = b'{"event_id": "h", "user_id": "u", "name": "' + b"x" * 5000 + b'"}'
    items = jsonl(good(1) + b"\n" + huge + b"\n" + good(3) + b"\n" + huge, max_bytes=1000)
    assert imported(items) == [1, 3]
    assert reports(items) == [
        f"e.jsonl:2: longer than the limit of 1,000 bytes ({len(huge) + 1:,} bytes); skipped",
        f"e.jsonl:4: longer than the limit of 1,000 bytes ({len(huge):,} bytes); skipped",
    ]
    # At the limit exactly, with either line ending, a line is read.
    exact = b'{"user_id": "u", "name": "' + b"y" * (1000 - 28) + b'"}'
    assert len(exact) == 1000
    assert imported(jsonl(exact + b"\r\n" + exact + b"\n" + exact, max_bytes=1000)) == [1, 2, 3]


def test_boms_and_crlf_line_endings() -> None:
    crlf = codecs.BOM_UTF8 + good(1) + b"\r\n\r\n" + good(3) + b"\r\n"
    assert imported(jsonl(crlf)) == [1, 3]
    rows = csv_rows(codecs.BOM_UTF8 + b"event_id,user_id,name\r\nc1,u,Opened\r\nc2,u,Opened\r\n")
    assert imported(rows) == [2, 3]
    assert [r.event.event_id for r in rows if isinstance(r, Record)] == ["c1", "c2"]
    # The same line with CRLF or LF is the same event (derived ids included).
    lf = jsonl(b'{"user_id": "u", "name": "Opened"}\n')
    crlf_line = jsonl(b'{"user_id": "u", "name": "Opened"}\r\n')
    assert isinstance(lf[0], Record) and isinstance(crlf_line[0], Record)
    assert lf[0].event == crlf_line[0].event


@pytest.mark.parametrize(
    "bom", [codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE]
)
def test_a_utf16_or_utf32_file_is_refused_whole_with_what_to_do(bom: bytes) -> None:
    with pytest.raises(FileProblem, match=r"byte order mark\); save it as UTF-8"):
        jsonl(bom + good(1).decode().encode("utf-16-le"))


def test_ragged_and_broken_csv_rows_are_reported_and_the_rest_imported() -> None:
    items = csv_rows(
        b"event_id,user_id,name\n"
        b"c1,u,Opened\n"
        b"c2,u\n"
        b"c3,u,Opened,extra\n"
        b"c4,u,caf\xe9\n"
        b'c5,u,"Multi\n'
        b"line \x00 with NUL\n"
        b'name"\n'
        b'c6,u,"Ope"ned\n'
        b"c7,u,Opened\n"
        b'c8,u,"never closed\n'
        b"c9,u,Opened\n"
    )
    assert imported(items) == [2, 10]
    # Every other line is named: a row over several lines with the lines it took.
    assert reports(items, "e.csv") == [
        "e.csv:3: has 2 cells, the header has 3",
        "e.csv:4: has 4 cells, the header has 3",
        "e.csv:5: not UTF-8 text (byte 0xe9 at byte 9 of the line)",
        "e.csv:7: holds a NUL byte (at byte 6 of the line)",
        "e.csv:6: holds a line that cannot be read (the row of lines 6-8)",
        "e.csv:9: not valid CSV (',' expected after '\"')",
        "e.csv:11: not valid CSV (unexpected end of data) (the row of lines 11-12)",
    ]


def test_a_csv_header_that_cannot_be_read_stops_the_import() -> None:
    with pytest.raises(FileProblem, match="the header cannot be read: not UTF-8"):
        csv_rows(b"event_id,\xffname\nc1,Opened\n")


def test_reports_stay_one_printable_line() -> None:
    (item,) = jsonl(b'{"event_id": "e", "user_id": "u", "name": "O", "ev\\u001b[31m\\nx": 1}\n')
    assert isinstance(item, LineProblem)
    shown = item.at("e.jsonl")
    assert "\x1b" not in shown and "\n" not in shown
    assert shown.startswith("e.jsonl:1: ev\\x1b[31m\\nx: unknown key")
    assert printable("a\u2028b\x7f") == "a\\u2028b\\x7f"


FOREIGN_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)  # the UTF-32 ones start alike
random_lines = st.lists(st.binary(max_size=120).map(lambda b: b.replace(b"\n", b"")), max_size=12)


@settings(max_examples=300, deadline=None)
@given(random_lines)
def test_random_bytes_give_an_event_or_a_problem_for_every_jsonl_line(lines: list[bytes]) -> None:
    data = b"\n".join(lines)
    if data.startswith(FOREIGN_BOMS):
        with pytest.raises(FileProblem):
            jsonl(data)
        return
    items = jsonl(data)
    if lines:
        lines[0] = lines[0].removeprefix(codecs.BOM_UTF8)
    blank = {n for n, raw in enumerate(lines, 1) if not raw.strip(b" \t\r")}
    expected = [n for n in range(1, len(lines) + 1) if n not in blank]
    assert [item.line for item in items] == expected
    for item in items:
        if isinstance(item, LineProblem):
            assert "\n" not in item.at("f") and "\x00" not in item.at("f")


@settings(max_examples=300, deadline=None)
@given(random_lines)
def test_random_csv_rows_never_stop_the_file(lines: list[bytes]) -> None:
    rows = csv_rows(b"\n".join([b"event_id,user_id,name,prop.x", *lines]))
    starts = [row.line for row in rows]
    assert len(starts) == len(set(starts)) and all(1 < n <= len(lines) + 1 for n in starts)
    for row in rows:
        if isinstance(row, LineProblem):
            assert "\n" not in row.at("f") and "\x00" not in row.at("f")
