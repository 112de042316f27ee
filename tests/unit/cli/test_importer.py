"""The import engine: batches, calls in flight, one message per bad line, failures whole."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence

import pytest
from cohortflow.ingest.v1 import ingest_pb2

from services.cli.client import CliError
from services.cli.importer import import_records
from services.cli.lines import read_lines
from services.cli.records import read_jsonl

Result = ingest_pb2.EventResult


class Ingest:
    """Our stand-in for TrackBatch: accepts new ids, duplicates seen ones, rejects `bad`."""

    def __init__(self, fail_on_call: int | None = None, hold_until: int = 1) -> None:
        self.seen: set[str] = set()
        self.calls: list[int] = []
        self.in_flight = 0
        self.fail_on_call = fail_on_call
        # answer nothing until this many calls are in flight at once
        self.hold_until = hold_until
        self.all_in = asyncio.Event()

    async def send(self, events: list[ingest_pb2.Event]) -> Sequence[Result]:
        self.calls.append(len(events))
        if self.fail_on_call == len(self.calls):
            raise CliError("ingest at h:1 answered UNAUTHENTICATED: unknown API key")
        self.in_flight += 1
        if self.in_flight >= self.hold_until:
            self.all_in.set()
        await self.all_in.wait()
        self.in_flight -= 1
        out = []
        for event in events:
            if event.name == "bad":
                violation = ingest_pb2.FieldViolation(field="name", description="is bad")
                out.append(
                    Result(
                        event_id=event.event_id,
                        status=Result.STATUS_REJECTED,
                        violations=[violation],
                    )
                )
            elif event.event_id in self.seen:
                out.append(Result(event_id=event.event_id, status=Result.STATUS_DUPLICATE))
            else:
                self.seen.add(event.event_id)
                out.append(Result(event_id=event.event_id, status=Result.STATUS_ACCEPTED))
        return out


def lines(
    count: int, bad: frozenset[int] = frozenset(), broken: frozenset[int] = frozenset()
) -> str:
    out = []
    for n in range(1, count + 1):
        if n in broken:
            out.append("{oops")
        else:
            name = "bad" if n in bad else "Opened"
            out.append(f'{{"event_id": "e{n}", "user_id": "u", "name": "{name}"}}')
    return "\n".join(out) + "\n"


async def run(text: str, ingest: Ingest, reports: list[str], **options: int) -> object:
    return await import_records(
        read_jsonl(read_lines(io.BytesIO(text.encode()))),
        ingest.send,
        report=reports.append,
        source="f.jsonl",
        **options,
    )


async def test_lines_go_in_batches_with_several_calls_in_flight() -> None:
    ingest, reports = Ingest(hold_until=3), []
    # the fake answers only once all three calls are in flight together
    tally = await asyncio.wait_for(
        run(lines(2500), ingest, reports, batch_size=1000, concurrency=3), timeout=30
    )
    assert sorted(ingest.calls) == [500, 1000, 1000]
    assert (tally.read, tally.accepted, tally.duplicate, tally.failed) == (2500, 2500, 0, 0)
    assert reports == []


async def test_every_bad_line_is_reported_once_with_its_number() -> None:
    ingest, reports = Ingest(), []
    tally = await run(
        lines(30, bad=frozenset({4, 20}), broken=frozenset({7})), ingest, reports, batch_size=8
    )
    assert (tally.accepted, tally.rejected, tally.unreadable) == (27, 2, 1)
    assert len(reports) == 3
    assert "f.jsonl:4: name: is bad (event_id e4)" in reports
    assert "f.jsonl:20: name: is bad (event_id e20)" in reports
    assert any(r.startswith("f.jsonl:7: not valid JSON") for r in reports)


async def test_importing_again_reports_everything_duplicate() -> None:
    ingest, reports = Ingest(), []
    await run(lines(50), ingest, reports, batch_size=7)
    tally = await run(lines(50), ingest, reports, batch_size=7)
    assert (tally.accepted, tally.duplicate) == (0, 50)


async def test_a_failed_call_stops_the_import_with_its_one_line() -> None:
    ingest, reports = Ingest(fail_on_call=2), []
    with pytest.raises(CliError, match="UNAUTHENTICATED"):
        await run(lines(100), ingest, reports, batch_size=10, concurrency=2)


async def test_calls_stay_under_the_byte_cap_and_a_bigger_event_is_a_reported_line() -> None:
    ingest, reports = Ingest(), []
    padded = [
        f'{{"event_id": "p{n}", "user_id": "u", "name": "Opened",'
        f' "properties": {{"pad": "{"x" * 900}"}}}}'
        for n in range(1, 21)
    ]
    huge = '{"event_id": "huge", "user_id": "u", "name": "Opened", "properties": {"pad": "%s"}}'
    text = "\n".join([*padded[:10], huge % ("y" * 9000), *padded[10:]]) + "\n"
    tally = await run(text, ingest, reports, batch_size=1000, max_call_bytes=4000)
    # About 950 bytes an event: 4 a call, never over the cap; the 9 kB one is not sent.
    assert ingest.calls == [4, 4, 4, 4, 4]
    assert (tally.accepted, tally.unreadable) == (20, 1)
    assert reports == ["f.jsonl:11: is 9,031 bytes as an event; one call carries at most 4,000"]
