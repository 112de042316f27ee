"""Every change is dated when it took effect: an event's changes at the event's time, a
deadline's at the deadline, whichever clock tick happened to notice them."""

from __future__ import annotations

from services.projector.domain.changes import Change
from services.projector.domain.engine import Engine
from services.projector.domain.policy import AppPolicy, LifecyclePolicy
from tests.support.logevents import DAY, HOUR, MINUTE, T0, identify, tick, track
from tests.support.segments import Definitions

SECOND = 1_000_000
TICK = T0 + 18 * HOUR + 16 * MINUTE  # 18:16:00
SEGMENTS = {
    "carted": {"events": {"name": "Added to Cart", "window": "1h", "op": ">=", "value": 1}},
    "abandoned": {
        "inaction": {"did": "Added to Cart", "not_did": "Order Completed", "within": "24h"}
    },
    "carted-twice": {"events": {"name": "Added to Cart", "window": "7d", "value": 2, "op": ">="}},
    "follows": {"all": [{"segment": "abandoned"}]},
    "pro": {"trait": {"key": "plan", "op": "=", "value": "pro"}},
}


class Fold:
    def __init__(self, policy: AppPolicy | None = None) -> None:
        self.engine = Engine(policy or AppPolicy(lifecycle=LifecyclePolicy(adaptive=False)))
        self.position = 0
        definitions = Definitions()
        self.apply(tick(TICK))
        for segment_id, condition in SEGMENTS.items():
            self.apply(*definitions.define(segment_id, condition))
            self.apply(*definitions.built(segment_id, self.position))
        self.engine.drain()

    def apply(self, *events: object) -> None:
        for event in events:
            self.position += 1
            self.engine.apply(event, self.position)

    def ticks(self, start: int, end: int) -> None:
        self.apply(*(tick(t) for t in range(start, end + 1, MINUTE)))

    def changes(self, kind: str = "membership") -> list[Change]:
        return [c for c in self.engine.drain().changes if c.kind == kind]


def dated(changes: list[Change]) -> list[tuple[str, str, str, int]]:
    return [(c.segment_id, c.to_value, c.cause, c.effective_us) for c in changes]


def test_an_entry_caused_by_an_event_is_dated_at_the_event_not_at_the_tick_before() -> None:
    fold = Fold()
    fold.apply(track("u", TICK + 29 * SECOND, "Added to Cart"))  # 18:16:29, clock at 18:16:00
    (change,) = fold.changes()
    assert (change.segment_id, change.to_value, change.cause) == ("carted", "entered", "event")
    assert change.effective_us == TICK + 29 * SECOND
    assert change.recorded_us == TICK
    assert fold.engine.users[("app", "u")].memberships["carted"][1] == TICK + 29 * SECOND


def test_an_inaction_entry_is_dated_when_the_wait_ran_out_not_when_a_tick_noticed_it() -> None:
    fold = Fold()
    cart = TICK + 29 * SECOND
    fold.apply(track("u", cart, "Added to Cart"))
    fold.changes()
    fold.ticks(TICK + MINUTE, TICK + DAY + 2 * MINUTE)
    entered = [c for c in fold.changes() if c.to_value == "entered"]
    assert dated(entered) == [
        ("abandoned", "entered", "time", cart + DAY),
        ("follows", "entered", "time", cart + DAY),
    ]
    assert entered[0].deadline_us == cart + DAY
    assert entered[0].recorded_us == TICK + DAY + MINUTE  # the tick at 18:17 noticed it


def test_a_late_event_dates_an_inaction_entry_at_its_deadline_and_others_at_the_event() -> None:
    fold = Fold()
    cart = TICK - 30 * HOUR  # arrives 30 hours late
    fold.apply(track("u", cart, "Added to Cart"))
    assert dated(fold.changes()) == [
        ("abandoned", "entered", "event", cart + DAY),  # 6 hours ago, not now, not 30 h ago
        ("follows", "entered", "event", cart + DAY),  # with the segment it follows
    ]


def test_deadlines_between_the_last_tick_and_an_event_come_before_the_event() -> None:
    fold = Fold()
    cart = TICK + 29 * SECOND
    fold.apply(track("u", cart, "Added to Cart"))
    fold.ticks(TICK + MINUTE, TICK + DAY)  # the last tick is 18:16:00 the next day
    fold.changes()
    # 18:16:40: another add to cart, before the tick of 18:17 noticed the 24 h at 18:16:29.
    fold.apply(track("u", cart + DAY + 11 * SECOND, "Added to Cart"))
    assert sorted(dated(fold.changes()), key=lambda c: (c[3], c[1] == "entered", c[0])) == [
        ("abandoned", "entered", "time", cart + DAY),
        ("follows", "entered", "time", cart + DAY),
        ("abandoned", "exited", "event", cart + DAY + 11 * SECOND),
        ("follows", "exited", "event", cart + DAY + 11 * SECOND),
        ("carted", "entered", "event", cart + DAY + 11 * SECOND),
        ("carted-twice", "entered", "event", cart + DAY + 11 * SECOND),
    ]


def test_a_lifecycle_deadline_before_an_event_ahead_of_the_clock_comes_first() -> None:
    fold = Fold(AppPolicy(lifecycle=LifecyclePolicy(adaptive=False, dormant_days=1, churn_days=9,
                                                    new_days=1)))  # fmt: skip
    first = TICK + 10 * SECOND
    fold.apply(track("u", first))
    fold.ticks(TICK + MINUTE, TICK + DAY + 15 * SECOND)  # last tick 18:16:00 the next day
    fold.changes("lifecycle")
    fold.apply(track("u", first + DAY + 40 * SECOND))  # 18:16:50, before the next tick
    steps = [(c.from_value, c.to_value, c.cause, c.effective_us) for c in fold.changes("lifecycle")]
    assert steps == [
        ("new", "dormant", "time", first + DAY),
        ("dormant", "reactivated", "event", first + DAY + 40 * SECOND),
    ]


def test_an_identify_dates_its_changes_at_its_own_time() -> None:
    fold = Fold()
    fold.apply(identify("u", TICK + 45 * SECOND, traits={"plan": "pro"}))
    assert dated(fold.changes()) == [("pro", "entered", "event", TICK + 45 * SECOND)]


def test_a_late_event_never_dates_a_change_before_the_users_last_one_and_is_a_correction() -> None:
    fold = Fold()
    fold.apply(track("u", TICK + 10 * SECOND, "Added to Cart"))
    fold.ticks(TICK + MINUTE, TICK + 3 * HOUR)  # left "carted" at 19:16:10
    fold.changes()
    # A second add to cart of 18:30 arrives late: "carted-twice" (7 days) holds since 18:30,
    # but the user's last change of it... was none, so 18:30 stands; "carted" (1 h) is over.
    fold.apply(track("u", TICK + 14 * MINUTE, "Added to Cart"))
    assert dated(fold.changes()) == [("carted-twice", "entered", "event", TICK + 14 * MINUTE)]
    # An order from before the user's inaction entry ends it: it cannot be dated before
    # the entry it undoes, and says that the entry was premature.
    fold.ticks(TICK + 3 * HOUR + MINUTE, TICK + DAY + 20 * MINUTE)
    (entry, _follow) = fold.changes()
    assert entry.effective_us == TICK + 14 * MINUTE + DAY
    fold.apply(track("u", TICK + 20 * MINUTE, "Order Completed"))
    exits = fold.changes()
    assert dated(exits) == [
        ("abandoned", "exited", "event", entry.effective_us),
        ("follows", "exited", "event", entry.effective_us),
    ]
    assert all(c.correction for c in exits)
