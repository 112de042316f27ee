"""Broadcast schedules (cron in a time zone), uplift intervals, conversion attribution."""

from __future__ import annotations

import pytest

from services.campaign.domain.conversions import Exposure, Tracked, conversions
from services.campaign.domain.model import BroadcastTrigger, ConversionGoal
from services.campaign.domain.schedule import fire_times
from services.campaign.domain.stats import uplift
from tests.support.campaign import at_us


def test_cron_fires_at_local_time_across_dst() -> None:
    daily = BroadcastTrigger(segment_id="s", cron="0 9 * * *", timezone="Europe/Berlin")
    fired = fire_times(
        daily, at_us("2026-03-27T12:00:00+00:00"), at_us("2026-03-30T12:00:00+00:00")
    )
    # 09:00 CET = 08:00 UTC before the change, 09:00 CEST = 07:00 UTC after it.
    assert fired == [
        at_us("2026-03-28T08:00:00+00:00"),
        at_us("2026-03-29T07:00:00+00:00"),
        at_us("2026-03-30T07:00:00+00:00"),
    ]


def test_a_run_fires_once_whatever_the_tick_interval() -> None:
    weekly = BroadcastTrigger(segment_id="s", cron="30 18 * * MON", timezone="UTC")
    start = at_us("2026-06-01T00:00:00+00:00")  # a Monday
    step = 7 * 60 * 1_000_000
    seen: list[int] = []
    last = start
    for tick in range(start + step, start + 8 * 86_400 * 1_000_000, step):
        new = fire_times(weekly, last, tick)
        seen += new
        last = max([last, *new])
    assert seen == [at_us("2026-06-01T18:30:00+00:00"), at_us("2026-06-08T18:30:00+00:00")]


def test_one_off_broadcast() -> None:
    once = BroadcastTrigger(segment_id="s", send_time_us=at_us("2026-06-02T10:00:00+00:00"))
    assert fire_times(once, 0, at_us("2026-06-02T09:59:59+00:00")) == []
    assert fire_times(once, 0, at_us("2026-06-02T10:00:00+00:00")) == [once.send_time_us]
    assert fire_times(once, once.send_time_us or 0, at_us("2026-06-03T00:00:00+00:00")) == []


def test_uplift_and_its_interval() -> None:
    lift = uplift(converted=120, exposed=1000, control_converted=80, control_exposed=1000)
    assert lift is not None
    assert lift.difference == pytest.approx(0.04)
    assert lift.relative == pytest.approx(0.5)
    # Wald interval: 0.04 +- 1.96 * sqrt(.12*.88/1000 + .08*.92/1000).
    assert lift.lower == pytest.approx(0.04 - 0.02624, abs=1e-4)
    assert lift.upper == pytest.approx(0.04 + 0.02624, abs=1e-4)
    assert uplift(1, 10, 0, 0) is None


def test_first_goal_event_within_the_window_converts() -> None:
    goal = ConversionGoal(event_name="Purchased", property_equals={"plan": "pro"}, window_s=3600)
    exposures = [
        Exposure("s1", "c1", "shop", "u1", 1_000_000_000),
        Exposure("s2", "c1", "shop", "u2", 0),
    ]
    events = [
        Tracked("shop", "u1", "e0", "Purchased", 999_000_000, {"plan": "pro"}),  # before: no
        Tracked("shop", "u1", "e1", "Purchased", 1_100_000_000, {"plan": "free"}),  # filter: no
        Tracked("shop", "u1", "e3", "Purchased", 1_300_000_000, {"plan": "pro"}),
        Tracked("shop", "u1", "e2", "Purchased", 1_200_000_000, {"plan": "pro"}),  # first
        Tracked("shop", "u2", "e4", "Purchased", 3_700_000_000, {"plan": "pro"}),  # too late
        Tracked("news", "u1", "e5", "Purchased", 1_100_000_000, {"plan": "pro"}),  # other app
    ]
    (found,) = conversions(exposures, events, {"c1": goal})
    assert (found.send_id, found.event_id, found.time_us) == ("s1", "e2", 1_200_000_000)
