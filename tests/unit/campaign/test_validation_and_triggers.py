"""Campaign definitions are judged field by field; changes fire and cancel what they should."""

from __future__ import annotations

import pytest

from services.campaign.domain.changes import (
    Change,
    broken_conditions,
    condition_of_change,
    triggers,
)
from services.campaign.domain.model import (
    BroadcastTrigger,
    CampaignDefinition,
    Channel,
    ConversionGoal,
    LifecycleTrigger,
    QuietHours,
    SegmentTrigger,
    Template,
    Variant,
)
from services.campaign.domain.validation import Rules, check_definition


def good(**fields) -> CampaignDefinition:
    fields.setdefault("trigger", SegmentTrigger(segment_id="s1"))
    fields.setdefault("variants", (Variant(name="A", template=Template(body="hi")),))
    fields.setdefault("channel", Channel.IN_APP)
    return CampaignDefinition(name="ok", **fields)


# 2026-06-02T08:00:00Z: definitions are judged at a time (send, start and end times).
NOW = 1_780_387_200_000_000


def fields_of(definition: CampaignDefinition, rules: Rules | None = None) -> list[str]:
    return [v.field for v in check_definition(definition, NOW, rules or Rules())]


def test_a_good_definition_passes() -> None:
    assert check_definition(good(), NOW) == []


def test_every_bad_field_is_named() -> None:
    bad = good(
        trigger=LifecycleTrigger(from_states=("sleepy",), to_states=()),
        channel=Channel.WEBHOOK,
        webhook_url="ftp://example.com",
        variants=(
            Variant(name="control", template=Template(body="{{ user.x")),
            Variant(name="B", weight=0, template=Template(body="")),
        ),
        control_percent=100,
        quiet_hours=QuietHours(start_minute=-1, end_minute=60, default_timezone="Mars/Olympus"),
        conversion_goal=ConversionGoal(event_name="", window_s=0),
        start_us=NOW + 10,
        end_us=NOW + 5,
    )
    assert fields_of(bad) == [
        "trigger.lifecycle.to_states",
        "trigger.lifecycle.from_states[0]",
        "channel_settings.webhook_url",
        "variants[0].name",
        "variants[0].template.body",
        "variants[1].weight",
        "variants[1].template.body",
        "control_percent",
        "quiet_hours.start",
        "quiet_hours.default_timezone",
        "conversion_goal.event_name",
        "conversion_goal.attribution_window",
        "end_time",
    ]


def test_broadcast_needs_a_schedule_and_a_valid_cron() -> None:
    assert fields_of(good(trigger=BroadcastTrigger(segment_id="s1"))) == [
        "trigger.broadcast.schedule"
    ]
    assert "trigger.broadcast.cron" in fields_of(
        good(trigger=BroadcastTrigger(segment_id="s1", cron="every day"))
    )
    assert "trigger.broadcast.timezone" in fields_of(
        good(trigger=BroadcastTrigger(segment_id="s1", cron="0 9 * * *", timezone="Nowhere"))
    )


def test_triggers_and_the_conditions_that_cancel_delayed_sends() -> None:
    entered = Change("c1", "shop", "u1", "segment", 0, segment_id="s1", entered=True)
    exited = Change("c2", "shop", "u1", "segment", 0, segment_id="s1", entered=False)
    on_entry = SegmentTrigger(segment_id="s1")
    assert triggers(on_entry, entered) and not triggers(on_entry, exited)
    assert not triggers(SegmentTrigger(segment_id="s2"), entered)
    assert condition_of_change(on_entry, entered) == "segment:s1:in"
    assert broken_conditions(exited) == ("segment:s1:in", "left_segment")

    to_dormant = LifecycleTrigger(from_states=("active", "loyal"), to_states=("dormant",))
    went = Change("c3", "shop", "u1", "lifecycle", 0, from_value="active", to_value="dormant")
    back = Change("c4", "shop", "u1", "lifecycle", 0, from_value="dormant", to_value="active")
    new_user = Change("c5", "shop", "u2", "lifecycle", 0, from_value="new", to_value="dormant")
    assert triggers(to_dormant, went) and not triggers(to_dormant, back)
    assert not triggers(to_dormant, new_user)
    assert triggers(LifecycleTrigger(to_states=("dormant",)), new_user)  # from any state
    assert condition_of_change(to_dormant, went) == "lifecycle:dormant"
    assert broken_conditions(back) == ("lifecycle:dormant", "lifecycle_changed")


@pytest.mark.parametrize("zone", ["America", "Europe/", "x" * 300, "0" * 27 + "\x80" * 60])
def test_a_time_zone_that_names_no_zone_file_is_refused_not_raised(zone: str) -> None:
    bad = good(quiet_hours=QuietHours(start_minute=0, end_minute=60, default_timezone=zone))
    assert "quiet_hours.default_timezone" in fields_of(bad)
