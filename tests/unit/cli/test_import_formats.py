"""Reading a tool's export in the import: which format, lines to records, Identify calls.

The engine sends a line's Identify calls (identify, alias, the link an event with both ids
implies) after its event is stored, never after one of its messages is rejected, and a
link once per import; random bytes and mixed formats are reported, never a crash.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

import pytest
from cohortflow.ingest.v1 import ingest_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from services.cli.client import CliError
from services.cli.import_formats import FormatReader, Source
from services.cli.importer import import_records
from services.cli.lines import read_lines
from services.cli.records import LineProblem, Record

Result = ingest_pb2.EventResult


class Ingest:
    """Our stand-in for TrackBatch and Identify, in the order the calls came."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()
        self.log: list[str] = []

    def _result(self, kind: str, event_id: str, bad: bool) -> Result:
        self.log.append(f"{kind} {event_id}")
        if bad:
            violation = ingest_pb2.FieldViolation(field="timezone", description="unknown")
            return Result(event_id=event_id, status=Result.STATUS_REJECTED, violations=[violation])
        if (kind, event_id) in self.seen:
            return Result(event_id=event_id, status=Result.STATUS_DUPLICATE)
        self.seen.add((kind, event_id))
        return Result(event_id=event_id, status=Result.STATUS_ACCEPTED)

    async def send(self, events: list[ingest_pb2.Event]) -> Sequence[Result]:
        return [self._result("track", e.event_id, e.name == "Bad") for e in events]

    async def identify(self, request: ingest_pb2.IdentifyRequest) -> Result:
        return self._result("identify", request.event_id, request.timezone == "Mars/Base")


def jsonl(*objects: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(o).encode() + b"\n" for o in objects)


async def run(data: bytes, ingest: Ingest, source: Source | None = None) -> tuple[Any, list[str]]:
    reports: list[str] = []
    reader = FormatReader(source)
    tally = await import_records(
        reader.records(read_lines(io.BytesIO(data))),
        ingest.send,
        identify=ingest.identify,
        report=reports.append,
        source="f.jsonl",
    )
    return tally, reports


def seg(kind: str, message_id: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "messageId": message_id, "timestamp": "2026-10-01T00:00:00Z", **fields}


async def test_an_events_link_is_sent_after_it_is_stored_and_once_per_import() -> None:
    ingest = Ingest()
    data = jsonl(
        seg("track", "t1", userId="u", anonymousId="a", event="E"),
        seg("track", "t2", userId="u", anonymousId="a", event="E"),
        seg("identify", "i1", userId="u", traits={"plan": "x"}),
    )
    tally, reports = await run(data, ingest, Source.segment)
    assert (tally.read, tally.accepted, tally.failed) == (3, 3, 0) and reports == []
    (link,) = [entry for entry in ingest.log if "link-" in entry]
    assert ingest.log.index(link) > ingest.log.index("track t1")
    assert sorted(ingest.log) == sorted(["track t1", "track t2", link, "identify i1"])
    again, _ = await run(data, ingest, Source.segment)
    assert (again.accepted, again.duplicate) == (0, 3)


async def test_nothing_of_a_line_follows_a_rejected_event_and_a_rejected_identify_is_named() -> (
    None
):
    ingest = Ingest()
    data = jsonl(
        seg("track", "t1", userId="u", anonymousId="a", event="Bad"),
        seg("identify", "i1", userId="u", context={"timezone": "Mars/Base"}),
        seg("alias", "al1", userId="u", previousId="a"),
    )
    tally, reports = await run(data, ingest, Source.segment)
    assert (tally.accepted, tally.rejected) == (1, 2)
    assert not any("link-" in entry for entry in ingest.log)  # its event was rejected
    assert reports == [
        "f.jsonl:1: timezone: unknown (event_id t1)",
        "f.jsonl:2: timezone: unknown (event_id i1)",
    ]


async def test_the_format_is_told_from_the_first_lines() -> None:
    data = jsonl(
        {"event": "E", "properties": {"time": 1791446112, "distinct_id": "u", "$insert_id": "1"}},
        {"event": "F", "properties": {"time": 1791446113, "distinct_id": "u", "$insert_id": "2"}},
    )
    reader = FormatReader(None)
    records = list(reader.records(read_lines(io.BytesIO(b"not json\n" + data))))
    assert reader.chosen is Source.mixpanel and reader.detected
    assert reader.description() == (
        "read as Mixpanel export lines (told from its first lines; --from chooses)"
    )
    assert isinstance(records[0], LineProblem) and records[0].line == 1
    assert [r.event.name for r in records[1:] if isinstance(r, Record) and r.event] == ["E", "F"]


def test_lines_of_no_known_format_are_read_as_cohortflow_jsonl() -> None:
    reader = FormatReader(None)
    (problem,) = reader.records(read_lines(io.BytesIO(jsonl({"nme": "typo"}))))
    assert reader.chosen is Source.cohortflow
    assert isinstance(problem, LineProblem) and problem.field == "nme"


async def test_lines_of_different_formats_stop_the_import_before_anything_is_sent() -> None:
    ingest = Ingest()
    data = jsonl(
        seg("track", "t1", userId="u", event="E"),
        {"event_type": "E", "device_id": "d", "event_time": "2026-01-01 00:00:00"},
    )
    with pytest.raises(CliError) as stopped:
        await run(data, ingest)
    assert str(stopped.value) == (
        "f.jsonl:1: cannot tell the format: the lines look like different formats: line 1"
        " like segment (type 'track', messageId, userId), line 2 like amplitude (event_type,"
        " event_time, device_id); pass one of --from cohortflow, --from segment,"
        " --from mixpanel, --from amplitude"
    )
    assert ingest.log == []


def test_a_bad_field_is_the_lines_problem_named_by_its_source_path() -> None:
    lines = jsonl({"type": "track", "userId": "u", "event": "E", "context": {"os": 7}})
    (problem,) = FormatReader(Source.segment).records(read_lines(io.BytesIO(lines)))
    assert isinstance(problem, LineProblem)
    assert problem.at("f.jsonl") == "f.jsonl:1: context.os: must be an object, got a number"


@pytest.mark.parametrize("source", list(Source))
@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=300))
def test_random_bytes_become_reported_lines_or_records_never_a_crash(
    source: Source, data: bytes
) -> None:
    # (after a first blank line: a UTF-16 byte order mark at the start stops a whole file)
    items = list(FormatReader(source).records(read_lines(io.BytesIO(b"\n" + data))))
    assert all(isinstance(item, Record | LineProblem) for item in items)
    assert all(item.line > 1 for item in items)
