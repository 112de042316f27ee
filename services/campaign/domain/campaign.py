"""Campaigns and app messaging policies as event-sourced aggregates.

Stored event topics are this module's path: do not move these classes (or
register the old topics). Definitions travel in events as JSON-native dicts.
"""

from __future__ import annotations

import uuid
from typing import Any

from eventsourcing.domain import Aggregate, event

from services.campaign.domain.model import CampaignDefinition, CampaignState, MessagingPolicy
from services.common.domain_errors import PreconditionFailed

# Fixed namespace of campaign and policy ids. Changing it breaks idempotent creates.
CAMPAIGNS_NAMESPACE = uuid.UUID("0b8f3c9e-5d3a-4c55-9a52-7c1d2f4e8a61")


class CampaignError(PreconditionFailed):
    """A command that the campaign's current state does not allow."""

    reason = "CAMPAIGN_STATE"


class VersionConflict(CampaignError):
    """An update that expected another version than the current one."""

    reason = "VERSION_CONFLICT"


class Campaign(Aggregate):
    @staticmethod
    def create_id(app_id: str, request_id: str) -> uuid.UUID:
        return uuid.uuid5(CAMPAIGNS_NAMESPACE, f"campaign\x1f{app_id}\x1f{request_id}")

    @event("Created")
    def __init__(
        self,
        app_id: str,
        request_id: str,
        definition: dict[str, Any],
        paused: bool,
        created_us: int,
    ) -> None:
        self.app_id = app_id
        self.request_id = request_id
        # The service clock at creation (a controllable clock in tests): broadcasts
        # schedule from here.
        self.created_us = created_us
        self.definition_data = definition
        self.definition_version = 1
        self.state = CampaignState.PAUSED if paused else CampaignState.ACTIVE

    @property
    def definition(self) -> CampaignDefinition:
        return CampaignDefinition.model_validate(self.definition_data)

    def check_not_archived(self) -> None:
        if self.state is CampaignState.ARCHIVED:
            msg = "the campaign is archived"
            raise CampaignError(msg)

    def check_version(self, expected: int) -> None:
        if expected and expected != self.definition_version:
            msg = f"the campaign is at version {self.definition_version}, not {expected}"
            raise VersionConflict(msg)

    def update(self, definition: dict[str, Any], expected_version: int = 0) -> None:
        self.check_not_archived()
        self.check_version(expected_version)
        self._updated(definition)

    @event("Updated")
    def _updated(self, definition: dict[str, Any]) -> None:
        self.definition_data = definition
        self.definition_version += 1

    def pause(self) -> None:
        if self.state is not CampaignState.ACTIVE:
            msg = f"only an active campaign can be paused; this one is {self.state.value}"
            raise CampaignError(msg)
        self._paused()

    @event("Paused")
    def _paused(self) -> None:
        self.state = CampaignState.PAUSED

    def resume(self) -> None:
        if self.state is not CampaignState.PAUSED:
            msg = f"only a paused campaign can be resumed; this one is {self.state.value}"
            raise CampaignError(msg)
        self._resumed()

    @event("Resumed")
    def _resumed(self) -> None:
        self.state = CampaignState.ACTIVE

    def archive(self) -> None:
        self.check_not_archived()
        self._archived()

    @event("Archived")
    def _archived(self) -> None:
        self.state = CampaignState.ARCHIVED


class AppMessagingPolicy(Aggregate):
    """One per app: global holdout and per-channel caps, versioned by its events."""

    @staticmethod
    def create_id(app_id: str) -> uuid.UUID:
        return uuid.uuid5(CAMPAIGNS_NAMESPACE, f"policy\x1f{app_id}")

    @event("Created")
    def __init__(self, app_id: str) -> None:
        self.app_id = app_id
        self.policy_data: dict[str, Any] = MessagingPolicy().model_dump(mode="json")
        self.policy_version = 0

    @property
    def policy(self) -> MessagingPolicy:
        return MessagingPolicy.model_validate(self.policy_data)

    @event("Updated")
    def update(self, policy: dict[str, Any]) -> None:
        self.policy_data = policy
        self.policy_version += 1
