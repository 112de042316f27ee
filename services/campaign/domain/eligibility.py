"""The delivery decision for one campaign, one user, one triggering change.

Order of the checks (the first that fails is the recorded reason): the user is not
erased (PrivacyService.EraseUser) -> a real
transition (no correction, not stale: see freshness.py) -> global holdout ->
assignment (variant or control, always recorded) -> re-entry -> consent -> contact
address -> quiet hours (delay or drop) -> frequency caps (app-wide per channel,
then per campaign). Control users go through the same
checks, so control and variants stay comparable; they are then withheld instead
of sent. Pure: everything it needs is passed in, time included.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from services.campaign.domain.assignment import CONTROL, HOLDOUT, assign, in_global_holdout
from services.campaign.domain.changes import Change, condition_of_change
from services.campaign.domain.freshness import skip_reason
from services.campaign.domain.model import (
    CampaignDefinition,
    Channel,
    FrequencyCap,
    MessagingPolicy,
    ReentryMode,
)
from services.campaign.domain.quiet_hours import quiet_until

# Delivery statuses as recorded.
PENDING = "pending"
SENDING = "sending"
SENT = "sent"
FAILED = "failed"
SUPPRESSED = "suppressed"
CANCELLED = "cancelled"
CONTROL_STATUS = "control"
HOLDOUT_STATUS = "holdout"
# Statuses that put a message on the user's channel (or will): caps count these.
COUNTED_BY_CAPS = frozenset({PENDING, SENDING, SENT})
# Statuses that mean the user went through the campaign: re-entry looks at these.
ADMITTED = frozenset({PENDING, SENDING, SENT, CONTROL_STATUS})

# Channels that need an explicit opt-in; on the others only an explicit refusal counts.
DEFAULT_OPT_IN_CHANNELS = frozenset({Channel.EMAIL, Channel.SMS, Channel.PUSH})

_US = 1_000_000


@dataclass(frozen=True)
class Profile:
    """What the campaign service knows of a user (the projector's profile row)."""

    user_id: str
    traits: dict[str, Any] = field(default_factory=dict)
    email: str = ""
    phone: str = ""
    push_token: str = ""
    consents: dict[str, bool] = field(default_factory=dict)
    timezone: str = ""
    country: str = ""
    city: str = ""
    lifecycle_state: str = ""
    rfm_group: str = ""
    # Erased (PrivacyService.EraseUser): never sent anything again.
    erased: bool = False

    def address(self, channel: Channel, definition: CampaignDefinition) -> str:
        if channel is Channel.EMAIL:
            return self.email
        if channel is Channel.SMS:
            return self.phone
        if channel is Channel.PUSH:
            return self.push_token
        if channel is Channel.WEBHOOK:
            return definition.webhook_url
        return self.user_id


@dataclass(frozen=True)
class RecentSend:
    campaign_id: str
    channel: str
    due_us: int


@dataclass
class UserHistory:
    """A user's recent sends (for caps) and last admission per campaign (for re-entry)."""

    recent: list[RecentSend] = field(default_factory=list)
    last_admitted: dict[str, int] = field(default_factory=dict)

    def copy(self) -> UserHistory:
        return UserHistory(list(self.recent), dict(self.last_admitted))

    def record(self, campaign_id: str, channel: str, decision: Decision, now_us: int) -> None:
        """Account for a decision just made, so the next one in a batch sees it."""
        if decision.status in COUNTED_BY_CAPS:
            self.recent.append(RecentSend(campaign_id, channel, decision.due_us))
        if decision.status in ADMITTED:
            self.last_admitted[campaign_id] = now_us


@dataclass(frozen=True)
class LiveCampaign:
    """One campaign version as the decision sees it."""

    campaign_id: str
    app_id: str
    version: int
    definition: CampaignDefinition


@dataclass(frozen=True)
class Decision:
    group: str
    status: str
    reason: str = ""
    due_us: int = 0
    condition: str = ""


def _within_cap(cap: FrequencyCap | None, times: Iterable[int], at_us: int) -> bool:
    if cap is None or cap.max_messages <= 0 or cap.window_s <= 0:
        return True
    window = cap.window_s * _US
    # Any earlier or later send less than a window away shares a window with this one.
    return sum(1 for t in times if abs(t - at_us) < window) < cap.max_messages


def _reentry_allows(campaign: CampaignDefinition, last_us: int | None, now_us: int) -> bool:
    if last_us is None:
        return True
    mode = campaign.reentry.mode
    if mode is ReentryMode.EVERY_TIME:
        return True
    if mode is ReentryMode.AFTER_COOLDOWN:
        return now_us - last_us >= campaign.reentry.cooldown_s * _US
    return False


def decide(
    campaign: LiveCampaign,
    policy: MessagingPolicy,
    change: Change,
    profile: Profile,
    history: UserHistory,
    now_us: int,
    opt_in_channels: frozenset[Channel] = DEFAULT_OPT_IN_CHANNELS,
) -> Decision:
    definition = campaign.definition
    channel = definition.channel
    user = change.user_id
    group = assign(
        user,
        campaign.campaign_id,
        definition.assignment_salt,
        definition.control_percent,
        definition.variants,
    )
    if profile.erased:
        return Decision(group, SUPPRESSED, "erased")
    skipped = skip_reason(definition, change, now_us)
    if skipped:
        return Decision(group, SUPPRESSED, skipped)
    if in_global_holdout(change.app_id, user, policy.holdout_salt, policy.global_holdout_percent):
        return Decision(HOLDOUT, HOLDOUT_STATUS)
    if not _reentry_allows(definition, history.last_admitted.get(campaign.campaign_id), now_us):
        return Decision(group, SUPPRESSED, "reentry")
    consent = profile.consents.get(channel.value)
    if consent is False or (consent is None and channel in opt_in_channels):
        return Decision(group, SUPPRESSED, "no_consent")
    if not profile.address(channel, definition):
        return Decision(group, SUPPRESSED, "no_contact")
    due = now_us + int(definition.delay_s * _US)
    if definition.quiet_hours is not None:
        until = quiet_until(due, definition.quiet_hours, profile.timezone)
        if until is not None:
            if definition.quiet_hours.drop:
                return Decision(group, SUPPRESSED, "quiet_hours")
            due = until
    on_channel = [s.due_us for s in history.recent if s.channel == channel.value]
    if not _within_cap(policy.channel_caps.get(channel), on_channel, due):
        return Decision(group, SUPPRESSED, "frequency_cap")
    mine = [s.due_us for s in history.recent if s.campaign_id == campaign.campaign_id]
    if not _within_cap(definition.frequency_cap, mine, due):
        return Decision(group, SUPPRESSED, "campaign_frequency_cap")
    if group == CONTROL:
        return Decision(group, CONTROL_STATUS, due_us=due)
    return Decision(
        group, PENDING, due_us=due, condition=condition_of_change(definition.trigger, change)
    )


def active_at(definition: CampaignDefinition, at_us: int) -> bool:
    """Is `at_us` within the campaign's start and end times?"""
    if definition.start_us is not None and at_us < definition.start_us:
        return False
    return definition.end_us is None or at_us < definition.end_us


__all__ = ["CONTROL", "HOLDOUT", "Decision", "LiveCampaign", "Profile", "UserHistory", "decide"]
