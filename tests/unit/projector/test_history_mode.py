"""History mode: between an app's HistoryImportStarted and Finished it folds by its own
clock (AppClockTicked), the recorded clock leaves it alone, its live events wait until
the history is folded; other apps are not affected; a restart goes on identically."""

from __future__ import annotations

from typing import Any

from services.eventlog.events import UserErased, erasure_uuid
from services.projector.domain.changes import Change, historical
from services.projector.domain.engine import Engine
from services.projector.domain.policy import AppPolicy, LifecyclePolicy, RfmPolicy
from tests.support.logevents import (
    DAY,
    HOUR,
    MINUTE,
    T0,
    history,
    identify,
    purchase,
    tick,
    track,
)

NOW = T0 + 100 * DAY
POLICY = AppPolicy(
    lifecycle=LifecyclePolicy(adaptive=False), rfm=RfmPolicy(recompute_minutes=24 * 60)
)


class Log:
    """A log folded by an engine, with positions."""

    def __init__(self, *events: object) -> None:
        self.events: list[object] = []
        self.engine = Engine(POLICY)
        self.folded = 0
        self.add(*events)

    def add(self, *events: object) -> list[Change]:
        self.events.extend(events)
        for event in events:
            self.folded += 1
            self.engine.apply(event, self.folded)
        return self.engine.drain().changes


def days(change: Change) -> float:
    return (change.effective_us - T0) / DAY


def lifecycle(changes: list[Change], app: str = "h") -> list[tuple[str, str, float, str]]:
    return [
        (c.user_id, c.to_value, days(c), c.cause)
        for c in changes
        if c.kind == "lifecycle" and c.app_id == app
    ]


def imported(job: str = "job-1") -> list[object]:
    return history(
        [
            track("u", T0 + HOUR, app="h"),
            purchase("u", T0 + 2 * HOUR, 10.0, app="h"),
            track("u", T0 + 20 * DAY, app="h"),
            purchase("w", T0 + 3 * DAY, 30.0, app="h"),
        ],
        job=job,
        app="h",
    )


def test_an_importing_app_moves_by_its_own_ticks_and_its_changes_show_as_historical() -> None:
    log = Log(tick(NOW))
    changes = log.add(*imported()[:-1])
    # Folded live, an event 100 days behind the clock would change no lifecycle at all.
    assert lifecycle(changes) == [
        ("u", "new", 1 / 24, "event"),
        ("w", "new", 3.0, "event"),
        ("u", "active", 7 + 1 / 24, "time"),
        ("w", "active", 10.0, "time"),
        ("u", "dormant", 14 + 2 / 24, "time"),
        ("w", "dormant", 17.0, "time"),
        ("u", "reactivated", 20.0, "event"),
    ]
    # RFM settles at the app's own daily ticks, not at the recorded clock's.
    rfm = [(c.user_id, c.to_value, days(c), c.cause) for c in changes if c.kind == "rfm"]
    assert sorted(rfm, key=lambda c: c[2]) == [
        ("u", "new_customers", 2 / 24, "event"),
        ("w", "potential_loyalists", 3.0, "event"),
        ("u", "promising", 4.0, "recomputation"),  # the app's midnight after w's purchase
    ]
    assert all(c.recorded_us == NOW and historical(c.effective_us, c.recorded_us) for c in changes)
    assert all(c.imported for c in changes)
    assert log.engine.now_us == NOW


def test_the_recorded_clock_leaves_an_importing_app_alone_and_moves_the_others() -> None:
    log = Log(tick(NOW), track("b", NOW, app="b"))
    log.add(*imported()[:-1])
    changes = log.add(tick(NOW + 60 * DAY))
    assert lifecycle(changes) == []  # u would have gone dormant, then churned by now
    assert [(c.to_value, (c.effective_us - NOW) / DAY) for c in changes if c.app_id == "b"] == [
        ("active", 7.0),
        ("dormant", 14.0),
        ("churned", 30.0),
    ]
    # At Finished the app's clock joins the recorded clock: the deadlines it passed fire.
    changes = log.add(imported()[-1])
    assert lifecycle(changes) == [
        ("u", "active", 27.0, "time"),
        ("w", "churned", 33.0, "time"),
        ("u", "dormant", 34.0, "time"),
        ("u", "churned", 50.0, "time"),
    ]
    assert log.engine.export_state()["apps"]["h"].get("history") is None


def test_live_events_of_the_importing_app_wait_for_the_history_then_fold_in_arrival_order() -> None:
    log = Log(tick(NOW))
    events = imported()
    changes = log.add(*events[:3])
    live = [track("v", NOW + MINUTE, app="h"), track("u", NOW + 2 * MINUTE, app="h")]
    changes += log.add(live[0], *events[3:6], live[1], *events[6:-1])
    assert all(c.user_id != "v" for c in changes)
    assert ("h", "v") not in log.engine.users
    parked = log.engine.export_state()["apps"]["h"]["history"]["parked"]
    assert [(position, e["event_id"]) for position, e in parked] == [
        (5, live[0].event_id),
        (9, live[1].event_id),
    ]
    changes = log.add(events[-1])
    assert lifecycle(changes)[-3:] == [
        ("u", "churned", 50.0, "time"),  # the clock rejoined first
        ("v", "new", 100 + 1 / 1440, "event"),
        ("u", "reactivated", 100 + 2 / 1440, "event"),
    ]
    assert [c.position for c in changes if c.user_id == "v"] == [5]
    parked_changes = [c for c in changes if c.position in (5, 9)]
    assert not any(historical(c.effective_us, c.recorded_us) for c in parked_changes)
    assert not any(c.imported for c in parked_changes)
    assert all(c.imported for c in changes if c not in parked_changes)  # the clock rejoining


def test_a_restart_in_the_middle_of_an_import_goes_on_as_one_fold() -> None:
    events: list[Any] = [tick(NOW), track("b", NOW, app="b"), *imported()]
    events.insert(6, track("v", NOW + MINUTE, app="h"))  # parked before the restart
    events.insert(-1, tick(NOW + 30 * DAY))
    whole = Log(*events)
    for cut in (3, 7, len(events) - 2):
        first = Log(*events[:cut])
        resumed = Engine.from_state(first.engine.export_state(), POLICY)
        changes = []
        for position, event in enumerate(events[cut:], start=cut + 1):
            resumed.apply(event, position)
        changes = resumed.drain().changes
        again = Log(*events[:cut])
        assert changes == again.add(*events[cut:]), cut
        assert resumed.export_state() == whole.engine.export_state(), cut


def test_markers_of_another_job_or_app_change_nothing() -> None:
    log = Log(tick(NOW))
    events = imported()
    log.add(*events[:-1])
    other = history([track("x", T0, app="h")], job="job-2", app="h")
    log.add(other[0], other[-1])  # a second start is refused by ingest; its Finished too
    assert log.engine.export_state()["apps"]["h"]["history"]["job_id"] == "job-1"
    assert log.add(tick(NOW + 60 * DAY)) == []
    assert lifecycle(log.add(events[-1]))


def test_a_user_erased_while_their_live_events_wait_keeps_no_personal_field_of_them() -> None:
    log = Log(tick(NOW))
    events = imported()
    log.add(*events[:-1])
    live = [
        identify("v", NOW + MINUTE, app="h", traits={"plan": "pro"}, contact={"email": "v@x"}),
        purchase("v", NOW + 2 * MINUTE, 12.0, app="h"),
        track("w", NOW + 3 * MINUTE, app="h", context={"city": "Berlin"}, note="keep"),
    ]
    log.add(*live)
    log.add(
        UserErased(
            originator_id=erasure_uuid("h", "r-v"),
            originator_version=1,
            app_id="h",
            user_id="v",
            request_id="r-v",
            requested_by="dpo",
            erased_time_us=NOW + 4 * MINUTE,
            subjects=["v"],
        )
    )
    parked = {
        e["event_id"]: e for _, e in log.engine.export_state()["apps"]["h"]["history"]["parked"]
    }
    v_identify, v_purchase, w_track = (parked[e.event_id] for e in live)
    assert (v_identify["traits"], v_identify["contact"], v_identify["sealed"]) == ({}, {}, "erased")
    assert (v_purchase["properties"], v_purchase["sealed"]) == ({"revenue": 12.0}, "erased")
    assert (w_track["context"], w_track["properties"]) == ({"city": "Berlin"}, {"note": "keep"})
    log.add(events[-1])
    v = log.engine.users[("h", "v")]
    assert v.traits == {} and v.event_count == 1 and v.purchases  # counts and amount kept
    assert log.engine.users[("h", "w")].place
