"""Comparing a recorded change stream with a replay: alignment, and every kind of difference."""

from __future__ import annotations

from cohortflow.changes.v1 import changes_pb2
from cohortflow.types.v1 import types_pb2

from services.projector.replay_check import Published, compare


def change(n: int, *, state: int = types_pb2.LIFECYCLE_STATE_ACTIVE, user: str = "u") -> Published:
    message = changes_pb2.LifecycleChanged(to_state=state)
    message.header.change_id = f"c{n}"
    message.header.user_id = user
    message.header.position = n
    return Published.of(
        "cohortflow.changes.app.lifecycle",
        "cohortflow.changes",
        f"c{n}",
        changes_pb2.LifecycleChanged.DESCRIPTOR.full_name,
        message.SerializeToString(),
    )


def test_a_recording_from_mid_history_is_aligned_and_identical() -> None:
    replay = [change(n) for n in range(1, 11)]
    result = compare(replay[4:8], replay, through_position=8)
    assert result.identical and result.compared == 4
    assert (result.first_position, result.through_position) == (5, 8)


def test_changes_after_the_compared_position_are_ignored_on_both_sides() -> None:
    replay = [change(n) for n in range(1, 11)]
    assert compare(replay[2:], replay[:6], through_position=6).identical


def test_a_field_difference_names_the_change_and_the_field() -> None:
    replay = [change(n) for n in range(1, 5)]
    recorded = [*replay[:2], change(3, state=types_pb2.LIFECYCLE_STATE_NEW), replay[3]]
    result = compare(recorded, replay, through_position=4)
    assert not result.identical and result.compared == 2
    assert result.first_difference is not None
    assert result.first_difference.startswith("change #3: c3 (app.lifecycle, position 3)")
    assert "to_state: published='LIFECYCLE_STATE_NEW' replay='LIFECYCLE_STATE_ACTIVE'" in (
        result.first_difference
    )


def test_a_missing_an_extra_and_an_unknown_change_are_each_reported() -> None:
    replay = [change(n) for n in range(1, 5)]
    extra = compare(replay[:3], replay, through_position=4).first_difference
    assert extra is not None and "never published: c4" in extra
    missing = compare(replay, replay[:3], through_position=4).first_difference
    assert missing is not None and "replay ends before it" in missing
    unknown = compare([change(9)], replay, through_position=9).first_difference
    assert unknown is not None and "never produced the first recorded change c9" in unknown
    swapped = compare([replay[0], replay[2]], replay, through_position=3).first_difference
    assert swapped is not None and "published c3" in swapped and "replay c2" in swapped
