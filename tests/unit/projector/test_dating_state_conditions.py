"""A segment on a state (lifecycle) entered through a late event is dated when the state
began, like the lifecycle change itself.

KNOWN GAP, FAILS ON PURPOSE (issue 11.3, found by verify-11-15): the fold dates the entry
at the late event's time (services/projector/domain/segments/dating.py takes state
conditions "as holding since lo", the event's time; engine.py passes lo = since_us). A
user first seen 19 days late becomes dormant at day 15 (the change says so), but enters
"lifecycle: [dormant]" at day 1, so CheckMembership and ListSegmentMembers as of days 1
to 14 count as dormant a user GetLifecycleSummary counts as new or active. Left for the
fold's restructuring (engine.py and the membership code are being moved): the entry's
lower bound should be the latest start of the states the condition reads (the user's
lifecycle since_us for lifecycle conditions).
"""

from __future__ import annotations

from services.projector.domain.engine import Engine
from services.projector.domain.policy import AppPolicy, LifecyclePolicy
from tests.support.logevents import DAY, MINUTE, T0, tick, track
from tests.support.segments import Definitions


def test_a_lifecycle_segment_entered_through_a_late_event_is_dated_when_the_state_began():
    engine = Engine(AppPolicy(lifecycle=LifecyclePolicy(late_limit_days=400)))
    definitions = Definitions()
    events: list[object] = [
        tick(T0),
        *definitions.define("dormant-users", {"lifecycle": ["dormant"]}),
    ]
    events += definitions.built("dormant-users", len(events))
    now = T0 + 20 * DAY
    events += [tick(now), track("u", T0 + DAY, received=now), tick(now + MINUTE)]
    engine.apply_all((event, position) for position, event in enumerate(events, 1))
    changes = engine.drain().changes
    (dormant,) = [c for c in changes if c.kind == "lifecycle" and c.to_value == "dormant"]
    (entered,) = [c for c in changes if c.kind == "membership"]
    assert dormant.effective_us == T0 + 15 * DAY  # 14 days after the event: right
    assert entered.effective_us == dormant.effective_us  # today: T0 + 1 day
