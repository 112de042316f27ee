"""Judging a campaign's trigger: the segment, states or groups it names, its schedule."""

from __future__ import annotations

import re

from croniter import croniter

from services.campaign.domain.model import (
    BroadcastTrigger,
    CampaignDefinition,
    LifecycleTrigger,
    RfmTrigger,
    SegmentTrigger,
)
from services.campaign.domain.quiet_hours import zone
from services.campaign.domain.schedule import ever_fires
from services.campaign.domain.text import control_problem
from services.campaign.domain.violations import Violation, check_states, check_time
from services.eventlog.vocabulary import LIFECYCLE_STATES, RFM_GROUPS

_SEGMENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,127}")
MAX_CRON_LENGTH = 200


def _check_broadcast(trigger: BroadcastTrigger, now_us: int, out: list[Violation]) -> None:
    if trigger.cron:
        if (
            len(trigger.cron) > MAX_CRON_LENGTH
            or control_problem(trigger.cron)
            or not croniter.is_valid(trigger.cron)
        ):
            out.append(Violation("trigger.broadcast.cron", "not a valid cron expression"))
        elif len(trigger.cron.split()) != 5:
            out.append(Violation("trigger.broadcast.cron", "use the 5-field form"))
        elif zone(trigger.timezone) is not None and not ever_fires(trigger, now_us):
            out.append(Violation("trigger.broadcast.cron", "never fires (no such date)"))
    elif trigger.send_time_us is None:
        out.append(Violation("trigger.broadcast.schedule", "set send_time or cron"))
    check_time("trigger.broadcast.send_time", trigger.send_time_us, now_us, out)
    if zone(trigger.timezone) is None:
        out.append(Violation("trigger.broadcast.timezone", "unknown IANA time zone"))


def check_trigger(definition: CampaignDefinition, now_us: int, out: list[Violation]) -> None:
    trigger = definition.trigger
    if isinstance(trigger, SegmentTrigger | BroadcastTrigger):
        kind = "segment" if isinstance(trigger, SegmentTrigger) else "broadcast"
        if not _SEGMENT_ID.fullmatch(trigger.segment_id):
            out.append(Violation(f"trigger.{kind}.segment_id", "required: letters, digits, _ or -"))
    if isinstance(trigger, BroadcastTrigger):
        _check_broadcast(trigger, now_us, out)
    if isinstance(trigger, LifecycleTrigger):
        if not trigger.to_states:
            out.append(Violation("trigger.lifecycle.to_states", "name at least one state"))
        check_states("trigger.lifecycle.from_states", trigger.from_states, LIFECYCLE_STATES, out)
        check_states("trigger.lifecycle.to_states", trigger.to_states, LIFECYCLE_STATES, out)
    if isinstance(trigger, RfmTrigger):
        if not trigger.to_groups:
            out.append(Violation("trigger.rfm.to_groups", "name at least one group"))
        check_states("trigger.rfm.from_groups", trigger.from_groups, RFM_GROUPS, out)
        check_states("trigger.rfm.to_groups", trigger.to_groups, RFM_GROUPS, out)
