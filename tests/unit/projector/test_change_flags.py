"""Corrections and changes about the past are delivered as such (ChangeHeader fields)."""

from __future__ import annotations

from cohortflow.changes.v1 import changes_pb2

from services.campaign.adapters.change_messages import decode_change
from services.common.jetstream import ChangeSubjects
from services.projector.adapters.encode import encode
from services.projector.domain.changes import Change
from services.projector.domain.engine import Engine
from services.projector.domain.policy import AppPolicy, LifecyclePolicy
from tests.support.logevents import DAY, HOUR, MINUTE, T0, history, tick, ticks, track

SECOND = 1_000_000


def fold(events: list[object], policy: LifecyclePolicy | None = None) -> list[Change]:
    engine = Engine(AppPolicy(lifecycle=policy or LifecyclePolicy(adaptive=False)))
    engine.apply_all((event, position) for position, event in enumerate(events, 1))
    return [c for c in engine.drain().changes if c.kind == "lifecycle"]


def header(change: Change) -> changes_pb2.ChangeHeader:
    _subject, _type, payload = encode(change, ChangeSubjects("test"))
    message = changes_pb2.LifecycleChanged()
    message.ParseFromString(payload)
    return message.header


def steps(changes: list[Change]) -> list[tuple[str, str, bool]]:
    return [(c.from_value, c.to_value, c.correction) for c in changes]


def test_a_late_event_turning_churned_into_dormant_is_a_correction() -> None:
    policy = LifecyclePolicy(adaptive=False, late_limit_days=30)
    events = [tick(T0), track("u", T0), tick(T0 + 32 * DAY)]  # churned at day 30
    late = track("u", T0 + 10 * DAY, received=T0 + 32 * DAY)  # so dormant since 24, not churned
    changes = fold([*events, late], policy)
    assert steps(changes)[-1] == ("churned", "dormant", True)
    assert changes[-1].effective_us == T0 + 24 * DAY
    assert changes[-1].corrected_since_us == T0 + 30 * DAY
    assert header(changes[-1]).correction


def test_a_late_event_moving_the_start_of_dormancy_is_a_dormant_to_dormant_correction() -> None:
    policy = LifecyclePolicy(adaptive=False, late_limit_days=30)
    events = [tick(T0), track("u", T0), tick(T0 + 20 * DAY)]  # dormant since day 14
    late = track("u", T0 + 3 * DAY, received=T0 + 20 * DAY)  # so dormant since day 17
    changes = fold([*events, late], policy)
    assert steps(changes)[-1] == ("dormant", "dormant", True)
    assert (changes[-1].effective_us, changes[-1].corrected_since_us) == (
        T0 + 17 * DAY,
        T0 + 14 * DAY,
    )


def test_transitions_on_time_are_neither_corrections_nor_historical() -> None:
    changes = fold([tick(T0), track("u", T0 + 20 * SECOND), *ticks(T0 + HOUR, T0 + 8 * DAY)])
    assert steps(changes) == [("", "new", False), ("new", "active", False)]
    for change in changes:
        flags = header(change)
        assert not flags.correction and not flags.historical
    # The first one took effect 20 s after the tick that was the clock: no lateness.
    assert header(changes[0]).lateness.ToMicroseconds() == 0


def test_changes_made_well_after_they_took_effect_are_historical() -> None:
    # The clock stood still for 32 days (a ticker outage), then moved on at once: every
    # deadline passed meanwhile is published now, dated at its deadline, as history.
    changes = fold([tick(T0), track("u", T0), tick(T0 + 32 * DAY)])
    assert [c.to_value for c in changes] == ["new", "active", "dormant", "churned"]
    late = [header(c) for c in changes[1:]]
    assert all(h.historical for h in late)
    assert [h.lateness.ToMicroseconds() for h in late] == [25 * DAY, 18 * DAY, 2 * DAY]
    # A late event's change, and only past the hour.
    (recent,) = fold([tick(T0 + HOUR), track("v", T0 + HOUR - 59 * MINUTE)])
    (older,) = fold([tick(T0 + 2 * HOUR), track("v", T0)])
    assert not header(recent).historical and header(recent).lateness.ToSeconds() == 59 * 60
    assert header(older).historical


def test_changes_of_an_imported_history_are_imported_and_historical_on_the_stream() -> None:
    imported = history([track("u", T0), track("u", T0 + 20 * DAY)], app="app")
    changes = fold([tick(T0 + 60 * DAY), *imported, track("v", T0 + 60 * DAY + MINUTE)])
    flags = [(c.user_id, c.to_value, header(c).imported, header(c).historical) for c in changes]
    assert flags == [
        ("u", "new", True, True),
        ("u", "active", True, True),
        ("u", "dormant", True, True),
        ("u", "reactivated", True, True),
        # At Finished, as the app's clock rejoins the recorded clock:
        ("u", "active", True, True),
        ("u", "dormant", True, True),
        ("u", "churned", True, True),
        ("v", "new", False, False),
    ]
    # Read back by the campaign as it reads the stream.
    _subject, type_name, payload = encode(changes[0], ChangeSubjects("test"))
    assert decode_change({"Cohortflow-Type": type_name}, payload).imported
