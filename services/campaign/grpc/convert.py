"""Campaign protos <-> domain values. Translation only: judging is domain/validation."""

from __future__ import annotations

import re

from cohortflow.campaigns.v1 import campaigns_pb2 as pb
from cohortflow.types.v1 import types_pb2
from google.protobuf import duration_pb2, timestamp_pb2

from services.campaign.domain import model as m
from services.campaign.domain.validation import Violation
from services.campaign.proto_names import lifecycle_name, lifecycle_number, rfm_name, rfm_number

CHANNELS = {
    types_pb2.CHANNEL_IN_APP: m.Channel.IN_APP,
    types_pb2.CHANNEL_EMAIL: m.Channel.EMAIL,
    types_pb2.CHANNEL_PUSH: m.Channel.PUSH,
    types_pb2.CHANNEL_SMS: m.Channel.SMS,
    types_pb2.CHANNEL_WEBHOOK: m.Channel.WEBHOOK,
}
CHANNEL_NUMBERS = {v: k for k, v in CHANNELS.items()}
STATES = {
    m.CampaignState.ACTIVE: pb.Campaign.STATE_ACTIVE,
    m.CampaignState.PAUSED: pb.Campaign.STATE_PAUSED,
    m.CampaignState.ARCHIVED: pb.Campaign.STATE_ARCHIVED,
}
REENTRY = {
    pb.ReentryPolicy.MODE_UNSPECIFIED: m.ReentryMode.ONCE,
    pb.ReentryPolicy.MODE_ONCE: m.ReentryMode.ONCE,
    pb.ReentryPolicy.MODE_EVERY_TIME: m.ReentryMode.EVERY_TIME,
    pb.ReentryPolicy.MODE_AFTER_COOLDOWN: m.ReentryMode.AFTER_COOLDOWN,
}
REENTRY_NUMBERS = {v: k for k, v in REENTRY.items() if k}
_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


def us(ts: timestamp_pb2.Timestamp) -> int:
    return ts.seconds * 1_000_000 + ts.nanos // 1000


def timestamp(value_us: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(
        seconds=value_us // 1_000_000, nanos=(value_us % 1_000_000) * 1000
    )


def seconds(d: duration_pb2.Duration) -> float:
    return d.seconds + d.nanos / 1e9


def duration(value_s: float) -> duration_pb2.Duration:
    whole = int(value_s)
    return duration_pb2.Duration(seconds=whole, nanos=round((value_s - whole) * 1e9))


def _minute(text: str) -> int:
    match = _HHMM.fullmatch(text)
    return int(match[1]) * 60 + int(match[2]) if match else -1


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _trigger(
    message: pb.Trigger,
) -> m.SegmentTrigger | m.LifecycleTrigger | m.RfmTrigger | m.BroadcastTrigger | None:
    kind = message.WhichOneof("kind")
    if kind == "segment":
        return m.SegmentTrigger(
            segment_id=message.segment.segment_id,
            entered=message.segment.direction != pb.SegmentTrigger.DIRECTION_EXITED,
        )
    if kind == "lifecycle":
        return m.LifecycleTrigger(
            from_states=tuple(lifecycle_name(v) for v in message.lifecycle.from_states),
            to_states=tuple(lifecycle_name(v) for v in message.lifecycle.to_states),
        )
    if kind == "rfm":
        return m.RfmTrigger(
            from_groups=tuple(rfm_name(v) for v in message.rfm.from_groups),
            to_groups=tuple(rfm_name(v) for v in message.rfm.to_groups),
        )
    if kind == "broadcast":
        b = message.broadcast
        return m.BroadcastTrigger(
            segment_id=b.segment_id,
            send_time_us=us(b.send_time) if b.HasField("send_time") else None,
            cron=b.cron,
            timezone=b.timezone or "UTC",
        )
    return None


def _value(v: types_pb2.Value) -> str | float | bool:
    kind = v.WhichOneof("kind")
    if kind == "number_value":
        return v.number_value
    if kind == "bool_value":
        return v.bool_value
    return v.string_value


def definition(message: pb.Campaign) -> tuple[m.CampaignDefinition | None, list[Violation]]:
    """The definition in a proto, or the fields that cannot even be read."""
    problems: list[Violation] = []
    trigger = _trigger(message.trigger)
    if trigger is None:
        problems.append(Violation("trigger", "set one of segment, lifecycle, rfm or broadcast"))
    channel = CHANNELS.get(message.channel)
    if channel is None:
        problems.append(Violation("channel", "required"))
    if problems or trigger is None or channel is None:
        return None, problems
    quiet = message.quiet_hours
    cap = message.frequency_cap
    goal = message.conversion_goal
    return (
        m.CampaignDefinition(
            name=message.name,
            trigger=trigger,
            channel=channel,
            webhook_url=message.channel_settings.webhook_url,
            email_from=message.channel_settings.email_from,
            variants=tuple(
                m.Variant(
                    name=v.name,
                    weight=v.weight if v.weight else 1,
                    template=m.Template(
                        title=v.template.title,
                        body=v.template.body,
                        data=dict(v.template.data),
                        suppress_on_missing=v.template.missing_variables
                        == pb.Template.MISSING_VARIABLES_SUPPRESS,
                    ),
                )
                for v in message.variants
            ),
            control_percent=message.control_percent,
            assignment_salt=message.assignment_salt,
            delay_s=seconds(message.delay),
            reentry=m.Reentry(
                mode=REENTRY.get(message.reentry.mode, m.ReentryMode.ONCE),
                cooldown_s=seconds(message.reentry.cooldown),
            ),
            frequency_cap=m.FrequencyCap(
                max_messages=cap.max_messages, window_s=seconds(cap.window)
            )
            if message.HasField("frequency_cap") and cap.max_messages
            else None,
            quiet_hours=m.QuietHours(
                start_minute=_minute(quiet.start),
                end_minute=_minute(quiet.end),
                drop=quiet.behavior == pb.QuietHours.BEHAVIOR_DROP,
                default_timezone=quiet.default_timezone or "UTC",
            )
            if message.HasField("quiet_hours") and (quiet.start or quiet.end)
            else None,
            conversion_goal=m.ConversionGoal(
                event_name=goal.event_name,
                property_equals={k: _value(v) for k, v in goal.property_equals.items()},
                window_s=seconds(goal.attribution_window)
                if goal.HasField("attribution_window")
                else 7 * 86_400,
            )
            if message.HasField("conversion_goal")
            else None,
            start_us=us(message.start_time) if message.HasField("start_time") else None,
            end_us=us(message.end_time) if message.HasField("end_time") else None,
            fire_on_corrections=message.fire_on_corrections,
            max_trigger_age_s=seconds(message.max_trigger_age)
            if message.HasField("max_trigger_age")
            else m.DEFAULT_MAX_TRIGGER_AGE_S,
        ),
        [],
    )


def _trigger_proto(
    trigger: m.SegmentTrigger | m.LifecycleTrigger | m.RfmTrigger | m.BroadcastTrigger,
) -> pb.Trigger:
    if isinstance(trigger, m.SegmentTrigger):
        direction = (
            pb.SegmentTrigger.DIRECTION_ENTERED
            if trigger.entered
            else pb.SegmentTrigger.DIRECTION_EXITED
        )
        return pb.Trigger(
            segment=pb.SegmentTrigger(segment_id=trigger.segment_id, direction=direction)
        )
    if isinstance(trigger, m.LifecycleTrigger):
        return pb.Trigger(
            lifecycle=pb.LifecycleTrigger(
                from_states=[lifecycle_number(s) for s in trigger.from_states],
                to_states=[lifecycle_number(s) for s in trigger.to_states],
            )
        )
    if isinstance(trigger, m.RfmTrigger):
        return pb.Trigger(
            rfm=pb.RfmTrigger(
                from_groups=[rfm_number(g) for g in trigger.from_groups],
                to_groups=[rfm_number(g) for g in trigger.to_groups],
            )
        )
    broadcast = pb.BroadcastTrigger(segment_id=trigger.segment_id, timezone=trigger.timezone)
    if trigger.cron:
        broadcast.cron = trigger.cron
    elif trigger.send_time_us is not None:
        broadcast.send_time.CopyFrom(timestamp(trigger.send_time_us))
    return pb.Trigger(broadcast=broadcast)


def campaign_proto(
    campaign_id: str,
    d: m.CampaignDefinition,
    state: m.CampaignState,
    version: int,
    created_us: int,
    updated_us: int,
) -> pb.Campaign:
    out = pb.Campaign(
        campaign_id=campaign_id,
        name=d.name,
        state=STATES[state],
        version=version,
        trigger=_trigger_proto(d.trigger),
        channel=CHANNEL_NUMBERS[d.channel],
        channel_settings=pb.ChannelSettings(webhook_url=d.webhook_url, email_from=d.email_from),
        variants=[
            pb.Variant(
                name=v.name,
                weight=v.weight,
                template=pb.Template(
                    title=v.template.title,
                    body=v.template.body,
                    data=v.template.data,
                    missing_variables=pb.Template.MISSING_VARIABLES_SUPPRESS
                    if v.template.suppress_on_missing
                    else pb.Template.MISSING_VARIABLES_EMPTY,
                ),
            )
            for v in d.variants
        ],
        control_percent=d.control_percent,
        assignment_salt=d.assignment_salt or campaign_id,
        delay=duration(d.delay_s),
        reentry=pb.ReentryPolicy(
            mode=REENTRY_NUMBERS[d.reentry.mode], cooldown=duration(d.reentry.cooldown_s)
        ),
        create_time=timestamp(created_us),
        update_time=timestamp(updated_us),
        fire_on_corrections=d.fire_on_corrections,
        max_trigger_age=duration(d.max_trigger_age_s),
    )
    if d.frequency_cap is not None:
        out.frequency_cap.CopyFrom(
            pb.FrequencyCap(
                max_messages=d.frequency_cap.max_messages, window=duration(d.frequency_cap.window_s)
            )
        )
    if d.quiet_hours is not None:
        q = d.quiet_hours
        out.quiet_hours.CopyFrom(
            pb.QuietHours(
                start=_hhmm(q.start_minute),
                end=_hhmm(q.end_minute),
                behavior=pb.QuietHours.BEHAVIOR_DROP if q.drop else pb.QuietHours.BEHAVIOR_DELAY,
                default_timezone=q.default_timezone,
            )
        )
    if d.conversion_goal is not None:
        g = d.conversion_goal
        out.conversion_goal.CopyFrom(
            pb.ConversionGoal(
                event_name=g.event_name,
                property_equals={k: _value_proto(v) for k, v in g.property_equals.items()},
                attribution_window=duration(g.window_s),
            )
        )
    if d.start_us is not None:
        out.start_time.CopyFrom(timestamp(d.start_us))
    if d.end_us is not None:
        out.end_time.CopyFrom(timestamp(d.end_us))
    return out


def _value_proto(v: str | float | bool) -> types_pb2.Value:
    if isinstance(v, bool):
        return types_pb2.Value(bool_value=v)
    if isinstance(v, float | int):
        return types_pb2.Value(number_value=float(v))
    return types_pb2.Value(string_value=v)


def policy(message: pb.MessagingPolicy) -> tuple[m.MessagingPolicy | None, list[Violation]]:
    problems: list[Violation] = []
    caps: dict[m.Channel, m.FrequencyCap] = {}
    for i, item in enumerate(message.channel_caps):
        channel = CHANNELS.get(item.channel)
        if channel is None:
            problems.append(Violation(f"channel_caps[{i}].channel", "required"))
        elif channel in caps:
            problems.append(Violation(f"channel_caps[{i}].channel", "one cap per channel"))
        else:
            caps[channel] = m.FrequencyCap(
                max_messages=item.cap.max_messages, window_s=seconds(item.cap.window)
            )
    if problems:
        return None, problems
    return (
        m.MessagingPolicy(
            global_holdout_percent=message.global_holdout_percent,
            holdout_salt=message.holdout_salt,
            channel_caps=caps,
        ),
        [],
    )


def policy_proto(p: m.MessagingPolicy, version: int) -> pb.MessagingPolicy:
    return pb.MessagingPolicy(
        global_holdout_percent=p.global_holdout_percent,
        holdout_salt=p.holdout_salt,
        channel_caps=[
            pb.ChannelCap(
                channel=CHANNEL_NUMBERS[c],
                cap=pb.FrequencyCap(max_messages=cap.max_messages, window=duration(cap.window_s)),
            )
            for c, cap in p.channel_caps.items()
        ],
        version=version,
    )
