"""Judging one history upload: each item by the rules of TrackBatch and Identify, plus
two of a history's own.

- Every item needs an event_time: a history event without one has no place in time
  (live calls default to the time ingest receives them).
- Items of one record (a line of the client's file) are staged all or none: when one is
  rejected, every other item of its record is rejected too, with a violation naming it.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.ingest.domain.model import EventDraft, IdentifyDraft, Limits, Violation
from services.ingest.domain.validation import check_event, check_identify

NO_TIME = Violation("event_time", "is required in a history import: when it happened")
RECORD = "record"


def _records(given: Sequence[int], count: int, field: str, out: list[Violation]) -> list[object]:
    """The record of each item: as given, or each its own when none are given."""
    if not given:
        return [object() for _ in range(count)]
    if len(given) != count:
        out.append(Violation(field, f"must give one record per item: {count}, got {len(given)}"))
    return list(given)


def check_records(
    event_records: Sequence[int], events: int, identify_records: Sequence[int], identifies: int
) -> list[Violation]:
    """Problems of the record lists themselves (refusing the whole call)."""
    out: list[Violation] = []
    _records(event_records, events, "event_records", out)
    _records(identify_records, identifies, "identify_records", out)
    return out


def judge_upload(
    events: Sequence[EventDraft],
    identifies: Sequence[IdentifyDraft],
    event_records: Sequence[int],
    identify_records: Sequence[int],
    now_us: int,
    limits: Limits,
) -> tuple[list[list[Violation]], list[list[Violation]]]:
    """The violations of every event and every Identify (empty: it may be staged). The
    record lists must have passed `check_records`."""
    event_problems = [_with_time(check_event(d, now_us, limits), d) for d in events]
    identify_problems = [_with_time(check_identify(d, now_us, limits), d) for d in identifies]
    unused: list[Violation] = []
    records = [
        *_records(event_records, len(events), "", unused),
        *_records(identify_records, len(identifies), "", unused),
    ]
    names = [f"events[{i}]" for i in range(len(events))]
    names += [f"identifies[{i}]" for i in range(len(identifies))]
    problems = [*event_problems, *identify_problems]
    spoiled: dict[object, str] = {}
    for record, name, found in zip(records, names, problems, strict=True):
        if found:
            spoiled.setdefault(record, name)
    for record, found in zip(records, problems, strict=True):
        if not found and record in spoiled:
            found.append(
                Violation(RECORD, f"not staged: {spoiled[record]} of record {record} was rejected")
            )
    return event_problems, identify_problems


def _with_time(found: list[Violation], draft: EventDraft | IdentifyDraft) -> list[Violation]:
    if draft.event_time_us is None:
        found.append(NO_TIME)
    return found
