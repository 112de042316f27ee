"""Judging a history upload: TrackBatch's and Identify's rules, a time for every item,
and the items of one record staged all or none."""

from __future__ import annotations

from services.ingest.domain.history_upload import NO_TIME, check_records, judge_upload
from services.ingest.domain.model import EventDraft, IdentifyDraft, Limits, Violation

NOW = 1_790_000_000_000_000
YEAR_AGO = NOW - 365 * 86_400_000_000


def event(event_id: str, name: str = "Opened", time: int | None = YEAR_AGO) -> EventDraft:
    return EventDraft(event_id, "u1", "", name, time)


def identify(event_id: str, email: str = "", time: int | None = YEAR_AGO) -> IdentifyDraft:
    return IdentifyDraft(event_id, "u1", "a1", time, email=email)


def test_the_rules_of_track_and_identify_apply_to_each_item() -> None:
    events, identifies = judge_upload(
        [event("e1"), event("e2", name="$bogus")],
        [identify("i1", email="not-an-address")],
        [],
        [],
        NOW,
        Limits(),
    )
    assert events[0] == []
    assert [v.field for v in events[1]] == ["name"]
    assert [v.field for v in identifies[0]] == ["contact.email"]


def test_every_item_needs_an_event_time() -> None:
    events, identifies = judge_upload(
        [event("e1", time=None)], [identify("i1", time=None)], [], [], NOW, Limits()
    )
    assert events == [[NO_TIME]] and identifies == [[NO_TIME]]


def test_old_events_pass_up_to_the_configured_age() -> None:
    limits = Limits(max_age_us=400 * 86_400_000_000)
    older = NOW - 500 * 86_400_000_000
    events, _ = judge_upload([event("e1"), event("e2", time=older)], [], [], [], NOW, limits)
    assert events[0] == []
    assert [v.field for v in events[1]] == ["event_time"]


def test_a_rejected_item_rejects_the_rest_of_its_record_only() -> None:
    events, identifies = judge_upload(
        [event("e1"), event("e2")],
        [identify("i1", email="bad"), identify("i2")],
        [7, 8],
        [7, 8],
        NOW,
        Limits(),
    )
    assert events[0] == [Violation("record", "not staged: identifies[0] of record 7 was rejected")]
    assert events[1] == [] and identifies[1] == []
    assert [v.field for v in identifies[0]] == ["contact.email"]


def test_record_lists_give_one_record_per_item_or_none() -> None:
    assert check_records([], 3, [], 2) == []
    assert check_records([1, 2, 3], 3, [4, 5], 2) == []
    problems = check_records([1], 3, [], 2)
    assert [v.field for v in problems] == ["event_records"]
