"""Triggers fire on real transitions only: corrections and old changes are skipped (and say
why) unless the campaign asks for them; broadcasts and fresh changes are not affected."""

from __future__ import annotations

from services.campaign.domain.changes import Change
from services.campaign.domain.eligibility import (
    PENDING,
    SUPPRESSED,
    LiveCampaign,
    Profile,
    UserHistory,
    decide,
)
from services.campaign.domain.freshness import (
    CORRECTION,
    IMPORTED_HISTORY,
    STALE_CHANGE,
    age_us,
    skip_reason,
)
from services.campaign.domain.model import (
    BroadcastTrigger,
    CampaignDefinition,
    Channel,
    LifecycleTrigger,
    MessagingPolicy,
    Reentry,
    ReentryMode,
    SegmentTrigger,
    Template,
    Variant,
)
from tests.support.campaign import at_us

NOW = at_us("2026-06-02T12:00:00+00:00")
MINUTE, HOUR, DAY = 60_000_000, 3_600_000_000, 86_400_000_000
WIN_BACK = LifecycleTrigger(from_states=("dormant", "churned"), to_states=("active",))


def campaign(**fields) -> CampaignDefinition:
    fields.setdefault("trigger", WIN_BACK)
    return CampaignDefinition(
        name="win back",
        channel=Channel.IN_APP,
        reentry=Reentry(mode=ReentryMode.EVERY_TIME),
        variants=(Variant(name="A", template=Template(body="We missed you")),),
        **fields,
    )


def lifecycle(n: int, to: str, came_from: str, *, at: int = NOW, **flags) -> Change:
    return Change(
        f"chg-{n}",
        "shop",
        "daily-user",
        "lifecycle",
        recorded_us=NOW,
        user_sequence=n,
        from_value=came_from,
        to_value=to,
        effective_us=at,
        **flags,
    )


def decided(definition: CampaignDefinition, change: Change) -> tuple[str, str]:
    decision = decide(
        LiveCampaign("c1", "shop", 1, definition),
        MessagingPolicy(),
        change,
        Profile(user_id=change.user_id),
        UserHistory(),
        NOW,
    )
    return decision.status, decision.reason


def test_a_daily_user_flapping_through_corrections_and_late_changes_gets_no_win_back() -> None:
    # The history the issue describes: a late event showed the user was never dormant,
    # so the projector corrected new -> dormant -> active; another user's changes came
    # in from a backlog a day late. None of it is a real transition now.
    history = [
        lifecycle(1, "dormant", "new", correction=True),
        lifecycle(2, "active", "dormant", correction=True),
        lifecycle(3, "active", "dormant", at=NOW - DAY),
        lifecycle(4, "active", "churned", at=NOW - 2 * HOUR),
    ]
    outcomes = [decided(campaign(), c) for c in history if c.to_value == "active"]
    assert outcomes == [
        (SUPPRESSED, CORRECTION),
        (SUPPRESSED, STALE_CHANGE),
        (SUPPRESSED, STALE_CHANGE),
    ]
    # A user who really comes back now is won back.
    assert decided(campaign(), lifecycle(5, "active", "dormant", at=NOW - MINUTE)) == (PENDING, "")


def test_a_campaign_can_ask_for_corrections_and_for_older_changes() -> None:
    corrected = lifecycle(1, "active", "dormant", correction=True)
    late = lifecycle(2, "active", "dormant", at=NOW - 3 * DAY)
    assert decided(campaign(fire_on_corrections=True), corrected) == (PENDING, "")
    assert decided(campaign(max_trigger_age_s=7 * 86_400), late) == (PENDING, "")
    # Asking for one does not let the other through.
    assert decided(campaign(fire_on_corrections=True), late)[1] == STALE_CHANGE
    assert decided(campaign(max_trigger_age_s=7 * 86_400), corrected)[1] == CORRECTION


def test_a_change_of_an_imported_history_never_fires_however_recent() -> None:
    imported = lifecycle(1, "active", "dormant", at=NOW - MINUTE, imported=True)
    assert decided(campaign(), imported) == (SUPPRESSED, IMPORTED_HISTORY)
    assert decided(campaign(max_trigger_age_s=31 * 86_400), imported)[1] == IMPORTED_HISTORY
    # The live change after the import fires as usual.
    assert decided(campaign(), lifecycle(2, "active", "dormant", at=NOW - MINUTE)) == (PENDING, "")


def test_the_default_max_age_is_an_hour_measured_against_the_deciding_clock() -> None:
    assert decided(campaign(), lifecycle(1, "active", "dormant", at=NOW - HOUR)) == (PENDING, "")
    assert decided(campaign(), lifecycle(2, "active", "dormant", at=NOW - HOUR - 1))[1] == (
        STALE_CHANGE
    )
    # A change dated ahead of the clock (a phone's clock running fast) is not old.
    assert decided(campaign(), lifecycle(3, "active", "dormant", at=NOW + HOUR)) == (PENDING, "")


def test_segment_entries_and_exits_are_judged_the_same_way() -> None:
    for entered in (True, False):
        definition = campaign(trigger=SegmentTrigger(segment_id="s", entered=entered))
        old = Change("c", "shop", "u", "segment", NOW, segment_id="s", entered=entered)
        assert skip_reason(definition, old, NOW + 2 * HOUR) == STALE_CHANGE
        fixed = Change(
            "d", "shop", "u", "segment", NOW, segment_id="s", entered=entered, correction=True
        )
        assert skip_reason(definition, fixed, NOW) == CORRECTION


def test_broadcast_runs_and_changes_without_times_are_never_skipped() -> None:
    broadcast = campaign(trigger=BroadcastTrigger(segment_id="s", cron="0 9 * * *"))
    run = Change("broadcast:c1:1", "shop", "u", "broadcast", NOW - 30 * DAY, segment_id="s")
    assert skip_reason(broadcast, run, NOW) == ""
    untimed = Change("c", "shop", "u", "lifecycle", 0, from_value="dormant", to_value="active")
    assert age_us(untimed, NOW) == 0 and skip_reason(campaign(), untimed, NOW) == ""
    # Without an effective time, the recorded time counts.
    recorded = Change("c", "shop", "u", "lifecycle", NOW - DAY, to_value="active")
    assert age_us(recorded, NOW) == DAY
