"""Telling a file's format from its first objects, and explaining when it cannot."""

from __future__ import annotations

import pytest

from services.common.formats.detect import GUESSES, Undecided, decide

SEGMENT = {"type": "track", "messageId": "m", "userId": "u", "event": "E"}
MIXPANEL = {"event": "E", "properties": {"time": 1, "distinct_id": "u"}}
AMPLITUDE = {"event_type": "E", "event_time": "2026-01-01 00:00:00", "device_id": "d"}


@pytest.mark.parametrize(
    ("sample", "name"),
    [(SEGMENT, "segment"), (MIXPANEL, "mixpanel"), (AMPLITUDE, "amplitude")],
)
def test_lines_all_of_one_format_tell_it(sample: dict[str, object], name: str) -> None:
    assert decide([(1, sample), (2, {"unrelated": True}), (3, sample)], GUESSES) == name


def test_lines_of_no_known_format_leave_the_choice_to_the_caller() -> None:
    assert decide([(1, {"name": "E"}), (2, {})], GUESSES) is None
    assert decide([], GUESSES) is None


def test_lines_of_different_formats_say_which_line_looks_like_which() -> None:
    with pytest.raises(Undecided) as undecided:
        decide([(1, SEGMENT), (2, SEGMENT), (4, MIXPANEL)], GUESSES)
    assert str(undecided.value) == (
        "the lines look like different formats: line 1 like segment (type 'track',"
        " messageId, userId), line 4 like mixpanel (only event and properties,"
        " properties.time, properties.distinct_id)"
    )


def test_one_line_that_looks_like_two_formats_is_named_with_both() -> None:
    both = {**AMPLITUDE, "type": "identify", "userId": "u"}
    with pytest.raises(Undecided) as undecided:
        decide([(7, both)], GUESSES)
    assert str(undecided.value).startswith("line 7 looks like more than one format: segment (")
    assert "amplitude (event_type, event_time, device_id)" in str(undecided.value)
