"""Derived state is a pure function of the log: however it is cut into batches, and
wherever the projector crashes and resumes from its last commit, the same log gives
the same final state and the same sequence of changes."""

from __future__ import annotations

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.projector.domain.engine import Engine
from services.projector.domain.policy import AppPolicy, LifecyclePolicy, RfmPolicy
from tests.support.logevents import MINUTE, T0, identify, tick, track
from tests.support.segments import Definitions

POLICY = AppPolicy(
    lifecycle=LifecyclePolicy(
        new_days=2,
        dormant_days=4,
        churn_days=9,
        reactivated_days=2,
        loyal_window_days=7,
        loyal_min_active_days=3,
        late_limit_days=3,
    ),
    rfm=RfmPolicy(window_days=20, recompute_minutes=12 * 60),
)
USERS = ["a", "b", "c", "d", "e"]
NAMES = ["App Opened", "Viewed Item", "Order Completed", "$app_uninstalled"]

step = st.one_of(
    st.tuples(st.just("tick"), st.integers(min_value=1, max_value=6 * 24 * 60)),
    st.tuples(
        st.just("event"),
        st.sampled_from(USERS),
        st.sampled_from(NAMES),
        st.integers(min_value=0, max_value=5 * 24 * 60),  # minutes late
        st.floats(min_value=1, max_value=500),
        st.booleans(),  # anonymous?
    ),
    st.tuples(st.just("identify"), st.sampled_from(USERS)),
)


SEGMENTS = {
    "carts": {"events": {"name": "Viewed Item", "window": "2d", "op": ">=", "value": 2}},
    "quiet": {"recency": {"name": "App Opened", "more_than": "3d"}},
    "gone": {"all": [{"lifecycle": ["dormant", "churned"]}, {"none": [{"segment": "carts"}]}]},
    "spenders": {
        "events": {
            "name": "Order Completed",
            "aggregate": "sum",
            "property": "revenue",
            "window": "10d",
            "op": ">",
            "value": 300,
        }
    },
    "lapsed-buyer": {
        "inaction": {"did": "Viewed Item", "not_did": "Order Completed", "within": "1d"}
    },
}


def build_log(steps: list) -> list[tuple[object, int]]:
    now = T0
    log: list[object] = [tick(now)]
    definitions = Definitions()
    for segment_id, condition in SEGMENTS.items():
        log += definitions.define(segment_id, condition)
        log += definitions.built(segment_id, len(log))
    for item in steps:
        if item[0] == "tick":
            now += item[1] * MINUTE
            log.append(tick(now))
        elif item[0] == "event":
            _, user, name, late, amount, anonymous = item
            at = now - late * MINUTE if late % 2 == 0 else now + 30_000_000
            if anonymous:
                event = track("", at, name, anonymous_id=f"dev-{user}", revenue=amount)
            else:
                event = track(user, at, name, revenue=amount)
            log.append(event)
        else:
            log.append(identify(item[1], now, anonymous_id=f"dev-{item[1]}"))
    return [(event, position) for position, event in enumerate(log, 1)]


def change_rows(engine: Engine) -> list[tuple]:
    return [
        (
            c.change_id,
            c.kind,
            c.user_id,
            c.sequence,
            c.from_value,
            c.to_value,
            c.cause,
            c.effective_us,
            c.position,
            c.correction,
            c.segment_id,
            c.published,
        )
        for c in engine.drain().changes
    ]


def one_pass(log: list) -> tuple[list, dict]:
    engine = Engine(POLICY)
    engine.apply_all(log)
    return change_rows(engine), engine.export_state()


def restore(state: dict) -> Engine:
    # Through bytes, as the store keeps it.
    return Engine.from_state(orjson.loads(orjson.dumps(state)), POLICY)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(step, min_size=1, max_size=80),
    cuts=st.lists(st.integers(min_value=1, max_value=15), min_size=1, max_size=30),
    crashes=st.lists(st.booleans(), min_size=1, max_size=30),
)
def test_batches_and_crashes_give_the_same_changes_and_state(
    steps: list, cuts: list[int], crashes: list[bool]
) -> None:
    log = build_log(steps)
    expected_changes, expected_state = one_pass(log)

    committed_state = Engine(POLICY).export_state()
    committed_changes: list[tuple] = []
    committed_at = 0
    engine = restore(committed_state)
    batch = 0
    while committed_at < len(log):
        size = cuts[batch % len(cuts)]
        crash = crashes[batch % len(crashes)] and batch % 2 == 1
        batch += 1
        chunk = log[committed_at : committed_at + size]
        engine.apply_all(chunk)
        produced = change_rows(engine)
        if crash:
            # Killed before the batch committed: resume from the last commit.
            engine = restore(committed_state)
            continue
        committed_changes += produced
        committed_at += len(chunk)
        committed_state = engine.export_state()
        if batch % 3 == 0:
            engine = restore(committed_state)  # a clean restart

    assert committed_changes == expected_changes
    assert committed_state == orjson.loads(orjson.dumps(expected_state))
