"""The delivery decision at controlled instants: consent, contact, caps, quiet hours, re-entry."""

from __future__ import annotations

import pytest

from services.campaign.domain.changes import Change
from services.campaign.domain.eligibility import (
    LiveCampaign,
    Profile,
    RecentSend,
    UserHistory,
    decide,
)
from services.campaign.domain.model import (
    CampaignDefinition,
    Channel,
    FrequencyCap,
    MessagingPolicy,
    QuietHours,
    Reentry,
    ReentryMode,
    SegmentTrigger,
    Template,
    Variant,
)
from tests.support.campaign import FakeClock, at_us

HOUR = 3600
DAY = 86_400


def definition(**fields) -> CampaignDefinition:
    fields.setdefault("channel", Channel.EMAIL)
    fields.setdefault("reentry", Reentry(mode=ReentryMode.EVERY_TIME))
    return CampaignDefinition(
        name="c",
        trigger=SegmentTrigger(segment_id="s"),
        variants=(Variant(name="A", template=Template(body="hi")),),
        **fields,
    )


def live(campaign_id: str = "c1", **fields) -> LiveCampaign:
    return LiveCampaign(campaign_id, "shop", 1, definition(**fields))


def change(user: str = "u1", n: int = 1) -> Change:
    return Change(f"chg-{n}", "shop", user, "segment", recorded_us=0, segment_id="s", entered=True)


def profile(**fields) -> Profile:
    fields.setdefault("email", "u1@example.com")
    fields.setdefault("consents", {"email": True})
    return Profile(user_id="u1", **fields)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(at_us("2026-06-02T12:00:00+00:00"))


def run(clock, campaign=None, policy=None, who=None, history=None, n=1):
    return decide(
        campaign or live(),
        policy or MessagingPolicy(),
        change(n=n),
        who or profile(),
        history if history is not None else UserHistory(),
        clock.now_us(),
    )


def test_sends_now_when_everything_allows_it(clock: FakeClock) -> None:
    decision = run(clock)
    assert (decision.status, decision.group, decision.due_us) == ("pending", "A", clock.now)
    assert decision.condition == "segment:s:in"


@pytest.mark.parametrize(
    ("consents", "channel", "status", "reason"),
    [
        ({}, Channel.EMAIL, "suppressed", "no_consent"),
        ({"email": False}, Channel.EMAIL, "suppressed", "no_consent"),
        ({"email": True}, Channel.EMAIL, "pending", ""),
        ({}, Channel.IN_APP, "pending", ""),  # in-app needs no opt-in
        ({"in_app": False}, Channel.IN_APP, "suppressed", "no_consent"),  # but honours opt-out
    ],
)
def test_consent_per_channel(clock, consents, channel, status, reason) -> None:
    decision = run(clock, live(channel=channel), who=profile(consents=consents))
    assert (decision.status, decision.reason) == (status, reason)


@pytest.mark.parametrize(
    ("channel", "fields"),
    [
        (Channel.EMAIL, {"email": ""}),
        (Channel.SMS, {"phone": ""}),
        (Channel.PUSH, {"push_token": ""}),
    ],
)
def test_a_missing_contact_address_suppresses(clock, channel, fields) -> None:
    who = profile(consents={channel.value: True}, **fields)
    decision = run(clock, live(channel=channel), who=who)
    assert (decision.status, decision.reason) == ("suppressed", "no_contact")


def test_app_wide_cap_per_channel_counts_every_campaign(clock: FakeClock) -> None:
    policy = MessagingPolicy(
        channel_caps={Channel.EMAIL: FrequencyCap(max_messages=2, window_s=DAY)}
    )
    history = UserHistory()
    # Two emails of two campaigns in the last day: the third is one too many.
    for n, campaign_id in enumerate(("c1", "c2"), 1):
        decision = run(clock, live(campaign_id), policy, history=history, n=n)
        assert decision.status == "pending"
        history.record(campaign_id, "email", decision, clock.now)
        clock.advance(HOUR)
    assert run(clock, live("c3"), policy, history=history).reason == "frequency_cap"
    # Other channels are not counted; a day after the first send one slot is free.
    assert run(clock, live("c3", channel=Channel.IN_APP), policy, history=history).reason == ""
    clock.advance(DAY - 2 * HOUR + 1)
    assert run(clock, live("c3"), policy, history=history).status == "pending"


def test_campaign_cap_counts_only_that_campaign(clock: FakeClock) -> None:
    history = UserHistory(
        recent=[RecentSend("other", "email", clock.now), RecentSend("c1", "email", clock.now)]
    )
    capped = live(frequency_cap=FrequencyCap(max_messages=1, window_s=7 * DAY))
    assert run(clock, capped, history=history).reason == "campaign_frequency_cap"
    assert (
        run(
            clock, live("c9", frequency_cap=capped.definition.frequency_cap), history=history
        ).reason
        == ""
    )


def test_caps_count_sends_scheduled_later_too(clock: FakeClock) -> None:
    """A send delayed to tomorrow morning still occupies that window."""
    history = UserHistory(recent=[RecentSend("c0", "email", clock.now + 10 * HOUR)])
    policy = MessagingPolicy(
        channel_caps={Channel.EMAIL: FrequencyCap(max_messages=1, window_s=DAY)}
    )
    assert run(clock, policy=policy, history=history).reason == "frequency_cap"


def test_reentry_once_every_time_and_after_cooldown(clock: FakeClock) -> None:
    once = live(reentry=Reentry(mode=ReentryMode.ONCE))
    every = live(reentry=Reentry(mode=ReentryMode.EVERY_TIME))
    cooldown = live(reentry=Reentry(mode=ReentryMode.AFTER_COOLDOWN, cooldown_s=7 * DAY))
    history = UserHistory(last_admitted={"c1": clock.now})
    clock.advance(3 * DAY)
    assert run(clock, once, history=history).reason == "reentry"
    assert run(clock, every, history=history).status == "pending"
    assert run(clock, cooldown, history=history).reason == "reentry"
    clock.advance(4 * DAY)
    assert run(clock, cooldown, history=history).status == "pending"
    assert run(clock, once, history=history).reason == "reentry"
    # Never admitted: always allowed.
    assert run(clock, once, history=UserHistory()).status == "pending"


def test_suppressed_decisions_do_not_count_as_entries(clock: FakeClock) -> None:
    history = UserHistory()
    once = live(reentry=Reentry(mode=ReentryMode.ONCE))
    refused = run(clock, once, who=profile(consents={}), history=history)
    history.record("c1", "email", refused, clock.now)
    assert refused.reason == "no_consent"
    assert run(clock, once, history=history).status == "pending"


QUIET = QuietHours(start_minute=22 * 60, end_minute=8 * 60)


@pytest.mark.parametrize(
    ("utc_now", "timezone", "expected_due"),
    [
        # 23:30 in Berlin (CEST, UTC+2): delayed to 08:00 Berlin = 06:00 UTC next day.
        ("2026-06-02T21:30:00+00:00", "Europe/Berlin", "2026-06-03T06:00:00+00:00"),
        # 01:00 in Berlin: delayed to 08:00 the same local day.
        ("2026-06-01T23:00:00+00:00", "Europe/Berlin", "2026-06-02T06:00:00+00:00"),
        # 21:30 UTC is 17:30 in New York (EDT): not quiet there.
        ("2026-06-02T21:30:00+00:00", "America/New_York", "2026-06-02T21:30:00+00:00"),
        # 12:00 UTC is 21:00 in Tokyo: fine; 13:30 UTC is 22:30 there: quiet until 08:00 JST.
        ("2026-06-02T12:00:00+00:00", "Asia/Tokyo", "2026-06-02T12:00:00+00:00"),
        ("2026-06-02T13:30:00+00:00", "Asia/Tokyo", "2026-06-02T23:00:00+00:00"),
        # No time zone on the profile: the campaign's default (UTC).
        ("2026-06-02T23:00:00+00:00", "", "2026-06-03T08:00:00+00:00"),
        # Spring forward in Berlin (29 March 2026, 02:00 -> 03:00): 08:00 CEST = 06:00 UTC.
        ("2026-03-28T22:30:00+00:00", "Europe/Berlin", "2026-03-29T06:00:00+00:00"),
        # Fall back (25 October 2026, 03:00 -> 02:00): 08:00 CET = 07:00 UTC.
        ("2026-10-24T22:30:00+00:00", "Europe/Berlin", "2026-10-25T07:00:00+00:00"),
    ],
)
def test_quiet_hours_delay_to_the_end_in_the_users_time_zone(
    clock: FakeClock, utc_now: str, timezone: str, expected_due: str
) -> None:
    clock.now = at_us(utc_now)
    decision = run(clock, live(quiet_hours=QUIET), who=profile(timezone=timezone))
    assert decision.status == "pending"
    assert decision.due_us == at_us(expected_due)


def test_quiet_hours_can_drop_instead(clock: FakeClock) -> None:
    clock.now = at_us("2026-06-02T21:30:00+00:00")
    dropping = live(quiet_hours=QUIET.model_copy(update={"drop": True}))
    decision = run(clock, dropping, who=profile(timezone="Europe/Berlin"))
    assert (decision.status, decision.reason) == ("suppressed", "quiet_hours")


def test_quiet_hours_within_a_day_and_an_end_in_the_dst_gap(clock: FakeClock) -> None:
    lunch = QuietHours(start_minute=12 * 60, end_minute=13 * 60)
    clock.now = at_us("2026-06-02T10:30:00+00:00")  # 12:30 in Berlin
    due = run(clock, live(quiet_hours=lunch), who=profile(timezone="Europe/Berlin")).due_us
    assert due == at_us("2026-06-02T11:00:00+00:00")
    # Quiet until 02:30 on the night 02:00-03:00 does not exist: shifted forward by the gap.
    night = QuietHours(start_minute=60, end_minute=150)
    clock.now = at_us("2026-03-29T00:15:00+00:00")  # 01:15 CET
    due = run(clock, live(quiet_hours=night), who=profile(timezone="Europe/Berlin")).due_us
    assert due == at_us("2026-03-29T01:30:00+00:00")  # 03:30 CEST


def test_delay_then_quiet_hours(clock: FakeClock) -> None:
    """A 2-hour delay that lands in quiet hours goes out when they end."""
    clock.now = at_us("2026-06-02T19:00:00+00:00")  # 21:00 Berlin, +2 h = 23:00
    delayed = live(delay_s=2 * HOUR, quiet_hours=QUIET)
    decision = run(clock, delayed, who=profile(timezone="Europe/Berlin"))
    assert decision.due_us == at_us("2026-06-03T06:00:00+00:00")


def test_global_holdout_comes_first_and_control_is_withheld(clock: FakeClock) -> None:
    everyone_held = MessagingPolicy(global_holdout_percent=99.999)
    assert run(clock, policy=everyone_held).status == "holdout"
    all_control = live(control_percent=99.999)
    decision = run(clock, all_control)
    assert (decision.group, decision.status, decision.due_us) == ("control", "control", clock.now)
    # Control users are refused for the same reasons as everyone else.
    assert run(clock, all_control, who=profile(consents={})).reason == "no_consent"


@pytest.mark.parametrize("channel", [Channel.IN_APP, Channel.EMAIL, Channel.WEBHOOK])
def test_an_erased_user_is_sent_nothing_and_the_reason_says_so(clock, channel) -> None:
    decision = run(clock, live(channel=channel), who=profile(erased=True))
    assert (decision.status, decision.reason) == ("suppressed", "erased")
