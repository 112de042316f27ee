"""Judging a campaign definition and a messaging policy: every bad field, by its path.

Paths are those of the proto fields relative to the campaign (e.g.
"variants[1].template.body"), so an API error can name them as they were sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from croniter import croniter

from services.campaign.domain.assignment import CONTROL, HOLDOUT
from services.campaign.domain.model import (
    LIFECYCLE_STATES,
    RFM_GROUPS,
    BroadcastTrigger,
    CampaignDefinition,
    Channel,
    FrequencyCap,
    LifecycleTrigger,
    MessagingPolicy,
    ReentryMode,
    RfmTrigger,
    SegmentTrigger,
)
from services.campaign.domain.quiet_hours import zone
from services.campaign.domain.templates import check_template

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_SEGMENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,127}")
MAX_VARIANTS = 16
MAX_NAME_LENGTH = 200


@dataclass(frozen=True)
class Violation:
    field: str
    description: str


def _check_states(field: str, names: tuple[str, ...], known: tuple[str, ...], out: list) -> None:
    for i, name in enumerate(names):
        if name not in known:
            out.append(Violation(f"{field}[{i}]", "unknown or unspecified value"))


def _check_trigger(definition: CampaignDefinition, out: list[Violation]) -> None:
    trigger = definition.trigger
    if isinstance(trigger, SegmentTrigger | BroadcastTrigger):
        kind = "segment" if isinstance(trigger, SegmentTrigger) else "broadcast"
        if not _SEGMENT_ID.fullmatch(trigger.segment_id):
            out.append(Violation(f"trigger.{kind}.segment_id", "required: letters, digits, _ or -"))
    if isinstance(trigger, BroadcastTrigger):
        if trigger.cron and not croniter.is_valid(trigger.cron):
            out.append(Violation("trigger.broadcast.cron", "not a valid cron expression"))
        if not trigger.cron and trigger.send_time_us is None:
            out.append(Violation("trigger.broadcast.schedule", "set send_time or cron"))
        if trigger.cron and len(trigger.cron.split()) != 5:
            out.append(Violation("trigger.broadcast.cron", "use the 5-field form"))
        if zone(trigger.timezone) is None:
            out.append(Violation("trigger.broadcast.timezone", "unknown IANA time zone"))
    if isinstance(trigger, LifecycleTrigger):
        if not trigger.to_states:
            out.append(Violation("trigger.lifecycle.to_states", "name at least one state"))
        _check_states("trigger.lifecycle.from_states", trigger.from_states, LIFECYCLE_STATES, out)
        _check_states("trigger.lifecycle.to_states", trigger.to_states, LIFECYCLE_STATES, out)
    if isinstance(trigger, RfmTrigger):
        if not trigger.to_groups:
            out.append(Violation("trigger.rfm.to_groups", "name at least one group"))
        _check_states("trigger.rfm.from_groups", trigger.from_groups, RFM_GROUPS, out)
        _check_states("trigger.rfm.to_groups", trigger.to_groups, RFM_GROUPS, out)


def _check_cap(field: str, cap: FrequencyCap | None, out: list[Violation]) -> None:
    if cap is None:
        return
    if cap.max_messages < 0:
        out.append(Violation(f"{field}.max_messages", "must not be negative"))
    if cap.max_messages > 0 and cap.window_s <= 0:
        out.append(Violation(f"{field}.window", "must be positive"))


def _check_url(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http or https URL"
    return None


def check_definition(definition: CampaignDefinition) -> list[Violation]:
    out: list[Violation] = []
    if not definition.name.strip() or len(definition.name) > MAX_NAME_LENGTH:
        out.append(Violation("name", f"required, at most {MAX_NAME_LENGTH} characters"))
    _check_trigger(definition, out)
    if definition.channel is Channel.WEBHOOK:
        problem = _check_url(definition.webhook_url)
        if problem:
            out.append(Violation("channel_settings.webhook_url", problem))
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
        for name, source in parts:
            problem = check_template(source)
            if problem:
                out.append(Violation(f"{path}.template.{name}", problem))
    if not 0 <= definition.control_percent < 100:
        out.append(Violation("control_percent", "must be at least 0 and below 100"))
    if definition.delay_s < 0:
        out.append(Violation("delay", "must not be negative"))
    if definition.reentry.mode is ReentryMode.AFTER_COOLDOWN and definition.reentry.cooldown_s <= 0:
        out.append(Violation("reentry.cooldown", "must be positive with MODE_AFTER_COOLDOWN"))
    _check_cap("frequency_cap", definition.frequency_cap, out)
    quiet = definition.quiet_hours
    if quiet is not None:
        for name, minute in (("start", quiet.start_minute), ("end", quiet.end_minute)):
            if not 0 <= minute < 24 * 60:
                out.append(Violation(f"quiet_hours.{name}", "must be a local time HH:MM"))
        if zone(quiet.default_timezone) is None:
            out.append(Violation("quiet_hours.default_timezone", "unknown IANA time zone"))
    goal = definition.conversion_goal
    if goal is not None:
        if not goal.event_name.strip():
            out.append(Violation("conversion_goal.event_name", "required"))
        if goal.window_s <= 0:
            out.append(Violation("conversion_goal.attribution_window", "must be positive"))
    if (
        definition.start_us is not None
        and definition.end_us is not None
        and definition.end_us <= definition.start_us
    ):
        out.append(Violation("end_time", "must be after start_time"))
    return out


def check_policy(policy: MessagingPolicy) -> list[Violation]:
    out: list[Violation] = []
    if not 0 <= policy.global_holdout_percent < 100:
        out.append(Violation("global_holdout_percent", "must be at least 0 and below 100"))
    for i, (_channel, cap) in enumerate(policy.channel_caps.items()):
        _check_cap(f"channel_caps[{i}].cap", cap, out)
    return out
