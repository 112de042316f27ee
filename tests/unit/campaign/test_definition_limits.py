"""Definitions that would reach inside the operator's network, inject headers, never fire,
wait for millennia or show control characters to marketers are refused, naming the field."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.campaign.domain.addresses import address_allowed, literal_address, parse_networks
from services.campaign.domain.model import (
    BroadcastTrigger,
    CampaignDefinition,
    Channel,
    ConversionGoal,
    Reentry,
    ReentryMode,
    SegmentTrigger,
    Template,
    Variant,
)
from services.campaign.domain.schedule import fire_times
from services.campaign.domain.text import shown
from services.campaign.domain.validation import Rules, check_definition
from tests.support.campaign import at_us

NOW = at_us("2026-06-02T08:00:00+00:00")
YEAR_S = 365.25 * 86_400
LOOPBACK = Rules(parse_networks("127.0.0.0/8, ::1/128"))


def good(**fields) -> CampaignDefinition:
    fields.setdefault("trigger", SegmentTrigger(segment_id="s1"))
    fields.setdefault("variants", (Variant(name="A", template=Template(body="hi")),))
    fields.setdefault("channel", Channel.IN_APP)
    fields.setdefault("name", "ok")
    return CampaignDefinition(**fields)


def problems(definition: CampaignDefinition, rules: Rules | None = None) -> dict[str, str]:
    return {v.field: v.description for v in check_definition(definition, NOW, rules or Rules())}


def webhook(url: str) -> CampaignDefinition:
    return good(channel=Channel.WEBHOOK, webhook_url=url)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1%25eth0]/hook",
        "http://[fd00:ec2::254]/",
        "http://127.0.0.1:8080/hook",
        "http://127.1/",
        "http://0x7f000001/",
        "http://2130706433/",
        "http://017700000001/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::1]/",
        "http://0.0.0.0/",
        "http://10.1.2.3/",
        "http://192.168.0.10/",
        "http://100.64.0.1/",
        "http://224.0.0.1/",
        "http://localhost:8080/",
        "http://api.localhost/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://hooks.example.com/a\r\nX-Injected: 1",
        "http://hooks.example.com/\n",
        "http://hooks.example.com/a b",
        "http://user:secret@hooks.example.com/",
        "http://hooks.example.com:99999/",
        "gopher://hooks.example.com/",
        "http://",
        "http://example.com/" + "x" * 3000,
    ],
)
def test_webhook_urls_into_the_operators_network_or_with_line_breaks_are_refused(url) -> None:
    assert "channel_settings.webhook_url" in problems(webhook(url))


def test_the_operator_can_allow_networks_and_public_hosts_pass() -> None:
    assert (
        "127.0.0.1 is not a public address"
        in problems(webhook("http://127.0.0.1/"))["channel_settings.webhook_url"]
    )
    assert problems(webhook("http://127.0.0.1:8080/hook"), LOOPBACK) == {}
    assert problems(webhook("http://[::1]:8080/hook"), LOOPBACK) == {}
    # Allowing loopback does not open the metadata service or private networks.
    assert problems(webhook("http://169.254.169.254/"), LOOPBACK)
    assert problems(webhook("http://10.0.0.1/"), LOOPBACK)
    for url in ("https://hooks.example.com/cohortflow", "http://93.184.216.34:8080/x"):
        assert problems(webhook(url)) == {}
    assert not address_allowed(literal_address("169.254.169.254"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a network"):
        parse_networks("10.0.0.0/8, nonsense")


@pytest.mark.parametrize(
    "sender",
    [
        "news@example.com\r\nBcc: everyone@example.com",
        "news@example.com\nSubject: hi",
        "Shop\x1b[31m <news@example.com>",
        "not an address",
        "a@example.com, b@example.com",
        "x" * 300 + "@example.com",
    ],
)
def test_email_from_must_be_one_address_on_one_line(sender: str) -> None:
    assert "channel_settings.email_from" in problems(good(channel=Channel.EMAIL, email_from=sender))


def test_a_good_sender_passes() -> None:
    for sender in ("news@example.com", "Shop News <news@example.com>", ""):
        assert problems(good(channel=Channel.EMAIL, email_from=sender)) == {}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"send_time_us": at_us("0001-01-01T00:00:00+00:00")}, "trigger.broadcast.send_time"),
        ({"send_time_us": at_us("9999-12-31T00:00:00+00:00")}, "trigger.broadcast.send_time"),
        ({"cron": "0 0 30 2 *"}, "trigger.broadcast.cron"),
        ({"cron": "0 0 31 4,6,9,11 *"}, "trigger.broadcast.cron"),
        ({"cron": "0 9 * * *\x00"}, "trigger.broadcast.cron"),
        ({"cron": "*/1 " * 100}, "trigger.broadcast.cron"),
    ],
)
def test_broadcasts_that_could_never_fire_are_refused(fields: dict, field: str) -> None:
    definition = good(trigger=BroadcastTrigger(segment_id="s1", **fields))
    assert field in problems(definition)


def test_a_cron_without_a_date_fires_nothing_instead_of_failing() -> None:
    # Campaigns stored before the check still tick (the scheduler fires nothing for them).
    never = BroadcastTrigger(segment_id="s1", cron="0 0 30 2 *")
    assert fire_times(never, NOW - int(YEAR_S * 1e6), NOW) == []
    leap = BroadcastTrigger(segment_id="s1", cron="0 0 29 2 *")
    assert problems(good(trigger=leap)) == {}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"delay_s": 10_000 * YEAR_S}, "delay"),
        ({"delay_s": -1.0}, "delay"),
        (
            {"reentry": Reentry(mode=ReentryMode.AFTER_COOLDOWN, cooldown_s=10_000 * YEAR_S)},
            "reentry.cooldown",
        ),
        (
            {"conversion_goal": ConversionGoal(event_name="buy", window_s=10_000 * YEAR_S)},
            "conversion_goal.attribution_window",
        ),
        ({"start_us": at_us("0001-01-01T00:00:00+00:00")}, "start_time"),
        ({"end_us": at_us("9999-12-31T00:00:00+00:00")}, "end_time"),
        ({"max_trigger_age_s": 0.0}, "max_trigger_age"),
        ({"max_trigger_age_s": 100 * YEAR_S}, "max_trigger_age"),
    ],
)
def test_waits_windows_and_times_beyond_any_use_are_refused(fields: dict, field: str) -> None:
    assert field in problems(good(**fields))


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": "Spring \x1b[2J\x1b[31msale"}, "name"),
        ({"name": "Spring\x00sale"}, "name"),
        ({"name": "evil\u202etxt.exe"}, "name"),
        ({"name": "two\nlines"}, "name"),
        ({"assignment_salt": "salt\x07"}, "assignment_salt"),
        (
            {"variants": (Variant(name="A", template=Template(title="Hi\x1b[5m", body="b")),)},
            "variants[0].template.title",
        ),
        (
            {"variants": (Variant(name="A", template=Template(body="a\x9bb")),)},
            "variants[0].template.body",
        ),
        (
            {"variants": (Variant(name="A", template=Template(body="b", data={"k\n": "v"})),)},
            "variants[0].template.data",
        ),
        (
            {"conversion_goal": ConversionGoal(event_name="Order\x1b[0m")},
            "conversion_goal.event_name",
        ),
    ],
)
def test_control_and_ansi_characters_in_text_marketers_see_are_refused(
    fields: dict, field: str
) -> None:
    found = problems(good(**fields))
    assert field in found and "must not contain" in found[field]


def test_template_bodies_keep_their_line_breaks_and_tabs() -> None:
    body = "Hello {{ user.first_name }},\r\n\tyour cart is waiting.\n"
    assert problems(good(variants=(Variant(name="A", template=Template(body=body)),))) == {}


def test_text_composed_from_unchecked_data_is_shown_escaped() -> None:
    assert shown("no attribute 'x\x1b[31m'\u202e") == "no attribute 'x\\x1b[31m'\\u202e"


TEXT = st.text(st.characters(codec="utf-8"), max_size=300)


@settings(max_examples=150, deadline=None)
@given(name=TEXT, body=TEXT, url=TEXT, sender=TEXT, cron=TEXT, zone=TEXT, key=TEXT)
def test_any_text_in_any_field_is_judged_never_raises(name, body, url, sender, cron, zone, key):
    definition = good(
        name=name,
        channel=Channel.WEBHOOK,
        webhook_url=url,
        email_from=sender,
        trigger=BroadcastTrigger(segment_id=key or "s", cron=cron or "0 9 * * *", timezone=zone),
        variants=(Variant(name="A", template=Template(title=name, body=body, data={key: body})),),
        conversion_goal=ConversionGoal(event_name=key, property_equals={key: name}),
    )
    for violation in check_definition(definition, NOW, LOOPBACK):
        assert violation.field and violation.description
