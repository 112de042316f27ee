"""UserErased in the fold: the user leaves every segment (cause ERASURE), their personal
state is cleared, they enter no segment again, and nobody else is touched."""

from __future__ import annotations

from services.eventlog.events import UserErased, erasure_uuid
from tests.support.logevents import HOUR, MINUTE, T0, identify, tick, track
from tests.unit.projector.test_segments import Run

SEGMENTS = {
    "pro": {"trait": {"key": "plan", "op": "=", "value": "pro"}},
    "busy": {"events": {"name": "A", "window": "3h", "op": ">=", "value": 2}},
    "berlin": {"geo": {"countries": ["DE"]}},
}


def erased(user: str, *anonymous: str) -> UserErased:
    return UserErased(
        originator_id=erasure_uuid("app", f"r-{user}"),
        originator_version=1,
        app_id="app",
        user_id=user,
        request_id=f"r-{user}",
        requested_by="dpo",
        erased_time_us=T0 + 30 * MINUTE,
        key_ids=[],
        subjects=[user, *(f"anonymous:{a}" for a in anonymous)],
    )


def members(run: Run) -> dict[str, set[str]]:
    return {s: run.members(s) for s in SEGMENTS}


def test_an_erased_user_leaves_every_segment_with_cause_erasure_and_stays_out() -> None:
    run = Run(SEGMENTS)
    for user in ("u1", "u2"):
        run.apply(
            identify(user, T0, traits={"plan": "pro"}, location={"country": "DE"}),
            track(user, T0 + MINUTE, "A"),
            track(user, T0 + 2 * MINUTE, "A"),
        )
    run.apply(track("", T0 + 3 * MINUTE, "A", anonymous_id="a9"))
    assert members(run) == {s: {"u1", "u2"} for s in SEGMENTS}
    run.changes()

    run.apply(erased("u1", "a9"))
    assert sorted(run.changes()) == [("u1", s, "exited", "erasure") for s in sorted(SEGMENTS)]
    assert members(run) == {s: {"u2"} for s in SEGMENTS}
    user = run.engine.users[("app", "u1")]
    assert user.erased and user.traits == {} and user.location == {} and user.place == {}
    assert user.event_count == 2  # counts are kept
    assert run.engine.users[("app", "anonymous:a9")].erased
    assert run.engine.users[("app", "u2")].traits == {"plan": "pro"}

    # New events, even ones that would qualify, and the passage of time bring them back
    # into no segment.
    run.apply(
        identify("u1", T0 + 40 * MINUTE, traits={"plan": "pro"}, location={"country": "DE"}),
        track("u1", T0 + 41 * MINUTE, "A"),
        track("u1", T0 + 42 * MINUTE, "A"),
        tick(T0 + 5 * HOUR),
    )
    assert [c for c in run.changes() if c[0] == "u1"] == []


def test_erasing_twice_or_an_unknown_user_changes_nothing() -> None:
    run = Run(SEGMENTS)
    run.apply(identify("u1", T0, traits={"plan": "pro"}))
    assert run.changes() == [("u1", "pro", "entered", "event")]
    run.apply(erased("u1"))
    assert run.changes() == [("u1", "pro", "exited", "erasure")]
    run.apply(erased("u1"), erased("nobody"))
    assert run.changes() == []
    assert ("app", "nobody") not in run.engine.users
