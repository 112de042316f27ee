"""A campaign's definition and the app-wide messaging policy, as plain values.

Definitions are pydantic models so they travel as JSON-native dicts in the
campaign events (see `campaign.py`) and come back unchanged. Times are integer
microseconds since the Unix epoch (UTC), durations float seconds, as in the
event log.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

# A change older than this (effective time against the clock) fires no trigger by default.
DEFAULT_MAX_TRIGGER_AGE_S = 3600.0


class Channel(StrEnum):
    """Channel names, as used in profile consents and the delivery log."""

    IN_APP = "in_app"
    EMAIL = "email"
    PUSH = "push"
    SMS = "sms"
    WEBHOOK = "webhook"


class Value(BaseModel):
    model_config = ConfigDict(frozen=True)


class SegmentTrigger(Value):
    kind: Literal["segment"] = "segment"
    segment_id: str
    entered: bool = True


class LifecycleTrigger(Value):
    """From one of `from_states` (empty: any) to one of `to_states` (lowercase names)."""

    kind: Literal["lifecycle"] = "lifecycle"
    from_states: tuple[str, ...] = ()
    to_states: tuple[str, ...] = ()


class RfmTrigger(Value):
    kind: Literal["rfm"] = "rfm"
    from_groups: tuple[str, ...] = ()
    to_groups: tuple[str, ...] = ()


class BroadcastTrigger(Value):
    """To a segment's members once at `send_time_us`, or whenever `cron` fires."""

    kind: Literal["broadcast"] = "broadcast"
    segment_id: str
    send_time_us: int | None = None
    cron: str = ""
    timezone: str = "UTC"


Trigger = Annotated[
    SegmentTrigger | LifecycleTrigger | RfmTrigger | BroadcastTrigger,
    Field(discriminator="kind"),
]


class Template(Value):
    title: str = ""
    body: str = ""
    data: dict[str, str] = Field(default_factory=dict)
    # False: a missing variable renders as ""; True: the send is suppressed.
    suppress_on_missing: bool = False


class Variant(Value):
    name: str
    weight: int = 1
    template: Template = Field(default_factory=Template)


class FrequencyCap(Value):
    """At most `max_messages` in any rolling window of `window_s` seconds."""

    max_messages: int
    window_s: float


class QuietHours(Value):
    """Minutes after local midnight; start > end wraps midnight (22:00 to 08:00)."""

    start_minute: int
    end_minute: int
    drop: bool = False
    default_timezone: str = "UTC"


class ReentryMode(StrEnum):
    ONCE = "once"
    EVERY_TIME = "every_time"
    AFTER_COOLDOWN = "after_cooldown"


class Reentry(Value):
    mode: ReentryMode = ReentryMode.ONCE
    cooldown_s: float = 0.0


class ConversionGoal(Value):
    event_name: str
    # Property name -> required value (str, float or bool).
    property_equals: dict[str, str | float | bool] = Field(default_factory=dict)
    window_s: float = 7 * 86_400


class CampaignDefinition(Value):
    name: str
    trigger: Trigger
    channel: Channel
    webhook_url: str = ""
    email_from: str = ""
    variants: tuple[Variant, ...]
    control_percent: float = 0.0
    assignment_salt: str = ""
    delay_s: float = 0.0
    reentry: Reentry = Field(default_factory=Reentry)
    frequency_cap: FrequencyCap | None = None
    quiet_hours: QuietHours | None = None
    conversion_goal: ConversionGoal | None = None
    start_us: int | None = None
    end_us: int | None = None
    # Which changes count as real transitions now (see freshness.py).
    fire_on_corrections: bool = False
    max_trigger_age_s: float = DEFAULT_MAX_TRIGGER_AGE_S


class CampaignState(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    ARCHIVED = "archived"


class MessagingPolicy(Value):
    """Rules of one app across all its campaigns."""

    global_holdout_percent: float = 0.0
    holdout_salt: str = ""
    channel_caps: dict[Channel, FrequencyCap] = Field(default_factory=dict)
