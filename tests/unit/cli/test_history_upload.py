"""The history upload engine: calls bounded in items, each line one record, a link sent
once, and a rejected line reported by its cause only."""

from __future__ import annotations

from cohortflow.ingest.v1 import history_pb2, ingest_pb2

from services.cli.history_upload import upload_records
from services.cli.records import LineProblem, Record

Result = ingest_pb2.EventResult


class Staging:
    """Our stand-in for UploadHistory: stages new ids, rejects events named `bad` and with
    them the rest of their record (as ingest does)."""

    def __init__(self) -> None:
        self.staged: set[str] = set()
        self.calls: list[history_pb2.UploadHistoryRequest] = []

    async def send(
        self, request: history_pb2.UploadHistoryRequest
    ) -> history_pb2.UploadHistoryResponse:
        self.calls.append(request)
        spoiled = {
            line
            for line, event in zip(request.event_records, request.events, strict=True)
            if event.name == "bad"
        }
        items = [*request.events, *request.identifies]
        records = [*request.event_records, *request.identify_records]
        results = []
        for item, record in zip(items, records, strict=True):
            if getattr(item, "name", "") == "bad":
                why = ingest_pb2.FieldViolation(field="name", description="is bad")
                results.append(
                    Result(event_id=item.event_id, status=Result.STATUS_REJECTED, violations=[why])
                )
            elif record in spoiled:
                why = ingest_pb2.FieldViolation(field="record", description="not staged")
                results.append(
                    Result(event_id=item.event_id, status=Result.STATUS_REJECTED, violations=[why])
                )
            elif item.event_id in self.staged:
                results.append(Result(event_id=item.event_id, status=Result.STATUS_DUPLICATE))
            else:
                self.staged.add(item.event_id)
                results.append(Result(event_id=item.event_id, status=Result.STATUS_ACCEPTED))
        count = len(request.events)
        return history_pb2.UploadHistoryResponse(
            event_results=results[:count], identify_results=results[count:]
        )


def record(line: int, name: str = "Opened", link: str = "") -> Record:
    event = ingest_pb2.Event(event_id=f"e{line}", user_id="u", name=name)
    joined = (
        ingest_pb2.IdentifyRequest(event_id=link, user_id="u", anonymous_id="d") if link else None
    )
    return Record(line, event, link=joined)


async def test_calls_carry_at_most_batch_size_items_each_line_its_own_record() -> None:
    staging = Staging()
    tally = await upload_records(
        iter([record(n) for n in range(1, 2501)]),
        "job",
        staging.send,
        report=print,
        batch_size=1000,
    )
    assert sorted(len(c.events) for c in staging.calls) == [500, 1000, 1000]
    assert all(
        list(c.event_records) == [int(e.event_id[1:]) for e in c.events] for c in staging.calls
    )
    assert all(c.job_id == "job" for c in staging.calls)
    assert (tally.read, tally.accepted) == (2500, 2500)


async def test_a_link_is_sent_with_the_first_line_that_implies_it_only() -> None:
    staging = Staging()
    records = [record(n, link="link-1") for n in range(1, 6)]
    await upload_records(
        iter(records), "job", staging.send, report=print, batch_size=2, concurrency=1
    )
    sent = [i.event_id for c in staging.calls for i in c.identifies]
    assert sent == ["link-1"]


async def test_a_rejected_line_is_reported_once_by_its_cause_and_counted_once() -> None:
    staging = Staging()
    reports: list[str] = []
    items = iter([record(1), record(2, name="bad", link="link-2"), LineProblem(3, "", "not JSON")])
    tally = await upload_records(
        items, "job", staging.send, report=reports.append, source="f.jsonl"
    )
    assert reports == ["f.jsonl:3: not JSON", "f.jsonl:2: name: is bad (event_id e2)"]
    assert (tally.accepted, tally.rejected, tally.unreadable) == (1, 1, 1)
    assert staging.staged == {"e1"}
