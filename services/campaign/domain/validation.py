"""Judging a campaign definition and a messaging policy: every bad field, by its path.

Paths are those of the proto fields relative to the campaign (e.g.
"variants[1].template.body"), so an API error can name them as they were sent.
Nothing of a template is run: templates are parsed and compiled only. Text that
marketers see is refused when it carries control characters (see text.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.campaign.domain.addresses import Network, email_from_problem, webhook_url_problem
from services.campaign.domain.assignment import CONTROL, HOLDOUT
from services.campaign.domain.model import (
    CampaignDefinition,
    Channel,
    ConversionGoal,
    FrequencyCap,
    MessagingPolicy,
    ReentryMode,
)
from services.campaign.domain.quiet_hours import zone
from services.campaign.domain.templates import check_template
from services.campaign.domain.text import control_problem
from services.campaign.domain.trigger_checks import check_trigger
from services.campaign.domain.violations import (
    DAY,
    MAX_COOLDOWN_S,
    MAX_DELAY_S,
    MAX_TRIGGER_AGE_S,
    MAX_WINDOW_S,
    Violation,
    check_duration,
    check_text,
    check_time,
)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
MAX_VARIANTS = 16
MAX_NAME_LENGTH = 200
MAX_TEXT_LENGTH = 1000


@dataclass(frozen=True)
class Rules:
    """What the operator allows beyond the defaults."""

    webhook_networks: tuple[Network, ...] = ()


def _check_cap(field: str, cap: FrequencyCap | None, out: list[Violation]) -> None:
    if cap is None:
        return
    if cap.max_messages < 0:
        out.append(Violation(f"{field}.max_messages", "must not be negative"))
    if cap.max_messages > 0 and cap.window_s <= 0:
        out.append(Violation(f"{field}.window", "must be positive"))
    elif cap.window_s > MAX_WINDOW_S:
        out.append(Violation(f"{field}.window", f"at most {MAX_WINDOW_S / DAY:.0f} days"))


def _check_variants(definition: CampaignDefinition, out: list[Violation]) -> None:
    if not definition.variants:
        out.append(Violation("variants", "define at least one variant"))
    if len(definition.variants) > MAX_VARIANTS:
        out.append(Violation("variants", f"at most {MAX_VARIANTS} variants"))
    seen: set[str] = set()
    for i, variant in enumerate(definition.variants):
        path = f"variants[{i}]"
        if not _NAME.fullmatch(variant.name) or variant.name in (CONTROL, HOLDOUT):
            out.append(
                Violation(f"{path}.name", "1-64 letters, digits, _ . -; not control or holdout")
            )
        elif variant.name in seen:
            out.append(Violation(f"{path}.name", "variant names must be unique"))
        seen.add(variant.name)
        if variant.weight < 1:
            out.append(Violation(f"{path}.weight", "must be at least 1"))
        template = variant.template
        if not template.body.strip():
            out.append(Violation(f"{path}.template.body", "required"))
        parts = [("title", template.title), ("body", template.body)]
        parts += [(f'data["{k}"]', v) for k, v in template.data.items()]
        for key in template.data:
            check_text(f"{path}.template.data", key, out)
        for name, source in parts:
            problem = control_problem(source, multiline=True) or check_template(source)
            if problem:
                out.append(Violation(f"{path}.template.{name}", problem))


def _check_channel(definition: CampaignDefinition, rules: Rules, out: list[Violation]) -> None:
    if definition.channel is Channel.WEBHOOK or definition.webhook_url:
        if definition.channel is Channel.WEBHOOK and not definition.webhook_url:
            out.append(Violation("channel_settings.webhook_url", "must be an http or https URL"))
        problem = webhook_url_problem(definition.webhook_url, rules.webhook_networks)
        if definition.webhook_url and problem:
            out.append(Violation("channel_settings.webhook_url", problem))
    problem = email_from_problem(definition.email_from)
    if problem:
        out.append(Violation("channel_settings.email_from", problem))


def _check_goal(goal: ConversionGoal | None, out: list[Violation]) -> None:
    if goal is None:
        return
    if not goal.event_name.strip() or len(goal.event_name) > MAX_NAME_LENGTH:
        out.append(Violation("conversion_goal.event_name", "required"))
    check_text("conversion_goal.event_name", goal.event_name, out)
    for key, value in goal.property_equals.items():
        check_text(f'conversion_goal.property_equals["{key}"]', key, out)
        if isinstance(value, str):
            check_text(f'conversion_goal.property_equals["{key}"]', value, out)
    check_duration(
        "conversion_goal.attribution_window", goal.window_s, MAX_WINDOW_S, out, positive=True
    )


def check_definition(
    definition: CampaignDefinition, now_us: int, rules: Rules = Rules()
) -> list[Violation]:
    """Every bad field of the definition, judged at `now_us`."""
    out: list[Violation] = []
    if not definition.name.strip() or len(definition.name) > MAX_NAME_LENGTH:
        out.append(Violation("name", f"required, at most {MAX_NAME_LENGTH} characters"))
    check_text("name", definition.name, out)
    check_trigger(definition, now_us, out)
    _check_channel(definition, rules, out)
    _check_variants(definition, out)
    if not 0 <= definition.control_percent < 100:
        out.append(Violation("control_percent", "must be at least 0 and below 100"))
    if len(definition.assignment_salt) > MAX_TEXT_LENGTH:
        out.append(Violation("assignment_salt", f"at most {MAX_TEXT_LENGTH} characters"))
    check_text("assignment_salt", definition.assignment_salt, out)
    check_duration("delay", definition.delay_s, MAX_DELAY_S, out)
    reentry = definition.reentry
    if reentry.mode is ReentryMode.AFTER_COOLDOWN or reentry.cooldown_s:
        positive = reentry.mode is ReentryMode.AFTER_COOLDOWN
        check_duration(
            "reentry.cooldown", reentry.cooldown_s, MAX_COOLDOWN_S, out, positive=positive
        )
    _check_cap("frequency_cap", definition.frequency_cap, out)
    quiet = definition.quiet_hours
    if quiet is not None:
        for name, minute in (("start", quiet.start_minute), ("end", quiet.end_minute)):
            if not 0 <= minute < 24 * 60:
                out.append(Violation(f"quiet_hours.{name}", "must be a local time HH:MM"))
        if zone(quiet.default_timezone) is None:
            out.append(Violation("quiet_hours.default_timezone", "unknown IANA time zone"))
    _check_goal(definition.conversion_goal, out)
    check_time("start_time", definition.start_us, now_us, out)
    check_time("end_time", definition.end_us, now_us, out)
    if (
        definition.start_us is not None
        and definition.end_us is not None
        and definition.end_us <= definition.start_us
    ):
        out.append(Violation("end_time", "must be after start_time"))
    check_duration(
        "max_trigger_age", definition.max_trigger_age_s, MAX_TRIGGER_AGE_S, out, positive=True
    )
    return out


def check_policy(policy: MessagingPolicy) -> list[Violation]:
    out: list[Violation] = []
    if not 0 <= policy.global_holdout_percent < 100:
        out.append(Violation("global_holdout_percent", "must be at least 0 and below 100"))
    for i, (_channel, cap) in enumerate(policy.channel_caps.items()):
        _check_cap(f"channel_caps[{i}].cap", cap, out)
    return out


__all__ = ["Rules", "Violation", "check_definition", "check_policy"]
