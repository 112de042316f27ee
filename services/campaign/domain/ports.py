"""Interfaces the campaign service needs from elsewhere; adapters implement them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from services.campaign.domain.eligibility import Profile
from services.campaign.domain.model import Template
from services.campaign.domain.templates import Rendered, Unrendered


class ProfileReader(Protocol):
    async def profiles(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Profile]:
        """Profiles by (app_id, user_id); users without one are left out."""
        ...


class SegmentMembers(Protocol):
    async def members(self, app_id: str, segment_id: str) -> list[str]:
        """User ids in the segment now (for broadcasts)."""
        ...


@dataclass(frozen=True)
class TriggerEvent:
    event_id: str
    name: str
    time_us: int
    properties: dict[str, Any] = field(default_factory=dict)


class TriggerEvents(Protocol):
    async def events(self, app_id: str, users: Mapping[str, str]) -> dict[str, TriggerEvent]:
        """The app's tracked events by client event id (missing ones left out); `users` maps
        each wanted event id to the user it was for (whose partition holds it first)."""
        ...


@dataclass(frozen=True)
class Outgoing:
    """One message for a provider: everything decided and rendered already."""

    send_id: str
    app_id: str
    campaign_id: str
    user_id: str
    channel: str
    address: str
    title: str
    body: str
    data: dict[str, str]
    variant: str
    change_id: str
    sender: str = ""


@dataclass(frozen=True)
class SendResult:
    ok: bool
    # Worth trying again later (timeouts, 429, 5xx); False: the provider said no.
    retryable: bool = False
    error: str = ""
    provider_id: str = ""
    # Seconds the provider asked us to wait (Retry-After), if any.
    retry_after_s: float | None = None
    # Why it was not sent, when not simply refused by the provider ("rejected").
    reason: str = ""


class ChannelSender(Protocol):
    async def send(self, message: Outgoing) -> SendResult:
        """Deliver one message; `message.send_id` is the idempotency key."""
        ...


@dataclass(frozen=True)
class RenderJob:
    """One message to render: `key` names the template (campaign, version, variant)."""

    key: str
    template: Template
    context: dict[str, Any]


class Renderer(Protocol):
    async def render(self, jobs: Sequence[RenderJob]) -> list[Rendered | Unrendered]:
        """Each job's message or why there is none, in order; never blocks the event loop."""
        ...


class SegmentDirectory(Protocol):
    async def lookup(self, authorization: str, segment_id: str) -> str:
        """The segment as the caller's app has it: LIVE, ARCHIVED or MISSING
        (`authorization`: the caller's own credentials). Raises SegmentsUnavailable."""
        ...


LIVE, ARCHIVED, MISSING = "live", "archived", "missing"


class SegmentsUnavailable(Exception):
    """Segments cannot be looked up right now (the projector did not answer)."""
