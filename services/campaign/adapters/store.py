"""The campaign definitions' event store: an eventsourcing application on PostgreSQL.

Its own events table (`campaigns_events`), so campaign history never mixes
with the user event log. Commands are synchronous (eventsourcing has no asyncio
API): callers run them in worker threads.
"""

from __future__ import annotations

import uuid
from typing import Any

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError

from services.campaign.adapters.connections import store_env
from services.campaign.domain.campaign import AppMessagingPolicy, Campaign
from services.campaign.domain.model import CampaignDefinition
from services.common.domain_errors import NotFound

STORE_NAME = "campaigns"  # events table: campaigns_events


class CampaignNotFound(NotFound):
    """No campaign with that id in the caller's app (a refusal: NOT_FOUND)."""

    def __init__(self, campaign_id: str) -> None:
        super().__init__("campaign", campaign_id)


class CampaignStore(Application[uuid.UUID]):
    name = STORE_NAME

    def create_campaign(
        self,
        app_id: str,
        request_id: str,
        definition: CampaignDefinition,
        paused: bool,
        now_us: int,
    ) -> tuple[Campaign, bool]:
        """(campaign, created?): a repeated request_id returns the first campaign."""
        campaign_id = Campaign.create_id(app_id, request_id)
        try:
            return self.repository.get(campaign_id), False
        except AggregateNotFoundError:
            pass
        campaign = Campaign(
            app_id=app_id,
            request_id=request_id,
            definition=definition.model_dump(mode="json"),
            paused=paused,
            created_us=now_us,
        )
        try:
            self.save(campaign)
        except IntegrityError:  # a concurrent retry stored it first
            return self.repository.get(campaign_id), False
        return campaign, True

    def campaign(self, app_id: str, campaign_id: str) -> Campaign:
        """The app's campaign; CampaignNotFound also for another app's campaign."""
        try:
            key = uuid.UUID(campaign_id)
            campaign: Campaign = self.repository.get(key)
        except (ValueError, AggregateNotFoundError) as error:
            raise CampaignNotFound(campaign_id) from error
        if campaign.app_id != app_id:
            raise CampaignNotFound(campaign_id)
        return campaign

    def change(self, app_id: str, campaign_id: str, command: str, **kwargs: Any) -> Campaign:
        """Run a command (update, pause, resume, archive) and save its events."""
        campaign = self.campaign(app_id, campaign_id)
        getattr(campaign, command)(**kwargs)
        self.save(campaign)
        return campaign

    def definition_at(self, app_id: str, campaign_id: str, version: int) -> dict[str, Any] | None:
        """The definition as it was at a past version (None if there is no such version)."""
        self.campaign(app_id, campaign_id)
        seen = 0
        for domain_event in self.events.get(uuid.UUID(campaign_id)):
            definition = getattr(domain_event, "definition", None)
            if definition is not None:
                seen += 1
                if seen == version:
                    return dict(definition)
        return None

    def policy(self, app_id: str) -> AppMessagingPolicy | None:
        try:
            policy: AppMessagingPolicy = self.repository.get(AppMessagingPolicy.create_id(app_id))
        except AggregateNotFoundError:
            return None
        return policy

    def update_policy(self, app_id: str, policy: dict[str, Any]) -> AppMessagingPolicy:
        current = self.policy(app_id) or AppMessagingPolicy(app_id=app_id)
        current.update(policy)
        self.save(current)
        return current


def open_campaign_store(database_url: str, **kwargs: Any) -> CampaignStore:
    return CampaignStore(env=store_env(database_url, **kwargs))
