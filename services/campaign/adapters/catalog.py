"""Every campaign and messaging policy, in memory, kept current from the campaign store.

The catalog follows the store's notification log: `refresh()` reads what was
recorded since its last position and reloads just those aggregates. Cheap when
nothing changed (one indexed query), so it runs before every batch of changes.
"""

from __future__ import annotations

import threading
import uuid
from collections import defaultdict
from dataclasses import dataclass

from services.campaign.adapters.store import CampaignStore
from services.campaign.domain.campaign import AppMessagingPolicy, Campaign
from services.campaign.domain.eligibility import LiveCampaign
from services.campaign.domain.model import (
    BroadcastTrigger,
    CampaignState,
    ConversionGoal,
    MessagingPolicy,
)
from services.campaign.domain.templates import uses_event
from services.eventlog.events import datetime_to_us

_NO_POLICY = MessagingPolicy()


@dataclass(frozen=True)
class CampaignView:
    live: LiveCampaign
    state: CampaignState
    created_us: int
    updated_us: int
    needs_event: bool

    @property
    def campaign_id(self) -> str:
        return self.live.campaign_id

    @property
    def active(self) -> bool:
        return self.state is CampaignState.ACTIVE


def view_of(campaign: Campaign) -> CampaignView:
    definition = campaign.definition
    return CampaignView(
        live=LiveCampaign(
            str(campaign.id), campaign.app_id, campaign.definition_version, definition
        ),
        state=campaign.state,
        created_us=campaign.created_us,
        updated_us=datetime_to_us(campaign.modified_on),
        needs_event=any(uses_event(v.template) for v in definition.variants),
    )


class CampaignCatalog:
    def __init__(self, store: CampaignStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._position = 0
        self._campaigns: dict[str, CampaignView] = {}
        self._by_app: dict[str, dict[str, CampaignView]] = defaultdict(dict)
        self._policies: dict[str, MessagingPolicy] = {}

    def refresh(self) -> None:
        """Load whatever the store recorded since the last refresh (thread-safe)."""
        with self._lock:
            while True:
                notifications = self._store.recorder.select_notifications(
                    self._position, 500, inclusive_of_start=False
                )
                if not notifications:
                    return
                for originator_id in dict.fromkeys(n.originator_id for n in notifications):
                    self._reload(uuid.UUID(str(originator_id)))
                self._position = notifications[-1].id

    def _reload(self, originator_id: uuid.UUID) -> None:
        aggregate: object = self._store.repository.get(originator_id)
        if isinstance(aggregate, AppMessagingPolicy):
            self._policies[aggregate.app_id] = aggregate.policy
        elif isinstance(aggregate, Campaign):
            view = view_of(aggregate)
            self._campaigns[view.campaign_id] = view
            self._by_app[aggregate.app_id][view.campaign_id] = view

    def get(self, campaign_id: str) -> CampaignView | None:
        return self._campaigns.get(campaign_id)

    def of_app(self, app_id: str) -> list[CampaignView]:
        return list(self._by_app.get(app_id, {}).values())

    def active_of_app(self, app_id: str) -> list[CampaignView]:
        return [v for v in self._by_app.get(app_id, {}).values() if v.active]

    def inactive_ids(self) -> list[str]:
        return [cid for cid, v in self._campaigns.items() if not v.active]

    def broadcasts(self) -> list[CampaignView]:
        return [
            v
            for v in self._campaigns.values()
            if v.active and isinstance(v.live.definition.trigger, BroadcastTrigger)
        ]

    def policy(self, app_id: str) -> MessagingPolicy:
        return self._policies.get(app_id, _NO_POLICY)

    def goals(self) -> dict[str, dict[str, ConversionGoal]]:
        """app -> campaign id -> conversion goal, for campaigns that have one."""
        out: dict[str, dict[str, ConversionGoal]] = {}
        for view in self._campaigns.values():
            goal = view.live.definition.conversion_goal
            if goal is not None:
                out.setdefault(view.live.app_id, {})[view.campaign_id] = goal
        return out
