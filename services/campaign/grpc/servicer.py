"""CampaignService: define campaigns (event-sourced), read their deliveries and stats."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import grpc
from cohortflow.campaigns.v1 import campaigns_pb2 as pb
from cohortflow.campaigns.v1 import campaigns_pb2_grpc as rpc
from psycopg_pool import AsyncConnectionPool

from services.campaign.adapters import deliveries as db
from services.campaign.adapters import reports
from services.campaign.adapters.catalog import CampaignCatalog
from services.campaign.adapters.store import CampaignStore
from services.campaign.domain.assignment import CONTROL, HOLDOUT
from services.campaign.domain.campaign import Campaign
from services.campaign.domain.clock import Clock
from services.campaign.domain.model import CampaignDefinition, CampaignState
from services.campaign.domain.ports import SegmentDirectory
from services.campaign.domain.stats import rate, uplift
from services.campaign.domain.text import shown
from services.campaign.domain.validation import Rules, Violation, check_definition, check_policy
from services.campaign.grpc import convert, paging
from services.campaign.grpc.segment_check import check_segment
from services.common.grpc.auth import current_app_id
from services.common.grpc.errors import (
    abort,
    campaign_not_found,
    invalid_argument,
)
from services.eventlog.events import datetime_to_us

CONFIDENCE_LEVEL = 0.95
UPDATABLE = frozenset(
    f.name
    for f in pb.Campaign.DESCRIPTOR.fields
    if f.name not in ("campaign_id", "state", "version", "create_time", "update_time")
)
_STATUS = {
    "pending": pb.Delivery.STATUS_PENDING,
    "sending": pb.Delivery.STATUS_PENDING,
    "sent": pb.Delivery.STATUS_SENT,
    "failed": pb.Delivery.STATUS_FAILED,
    "suppressed": pb.Delivery.STATUS_SUPPRESSED,
    "cancelled": pb.Delivery.STATUS_CANCELLED,
    "control": pb.Delivery.STATUS_CONTROL,
    "holdout": pb.Delivery.STATUS_HOLDOUT,
}


def campaign_message(
    campaign: Campaign, definition: CampaignDefinition | None = None
) -> pb.Campaign:
    return convert.campaign_proto(
        str(campaign.id),
        definition or campaign.definition,
        campaign.state,
        campaign.definition_version,
        campaign.created_us,
        datetime_to_us(campaign.modified_on),
    )


class CampaignServicer(rpc.CampaignServiceServicer):
    def __init__(
        self,
        store: CampaignStore,
        catalog: CampaignCatalog,
        pool: AsyncConnectionPool,
        clock: Clock,
        segments: SegmentDirectory,
        rules: Rules,
    ) -> None:
        self._store = store
        self._clock = clock
        self._catalog = catalog
        self._pool = pool
        self._segments = segments
        self._rules = rules

    async def _run(
        self, context: grpc.aio.ServicerContext, call: Callable[[], Campaign]
    ) -> Campaign:
        """A store command in a worker thread. Its refusals (CampaignNotFound, CampaignError,
        VersionConflict: services.common.domain_errors) escape to the request guard, which
        answers each with its status from the one table (services.common.grpc.errors)."""
        return await asyncio.to_thread(call)

    async def _definition(
        self, context: grpc.aio.ServicerContext, message: pb.Campaign
    ) -> CampaignDefinition:
        definition, problems = convert.definition(message)
        if definition is not None:
            problems = check_definition(definition, self._clock.now_us(), self._rules)
        if problems or definition is None:
            await abort(context, invalid_argument(problems, prefix="campaign."))
        return definition

    async def CreateCampaign(
        self, request: pb.CreateCampaignRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateCampaignResponse:
        app_id = current_app_id()
        definition = await self._definition(context, request.campaign)
        await check_segment(context, self._segments, definition)
        request_id = request.request_id or uuid.uuid4().hex
        now = self._clock.now_us()
        campaign = await self._run(
            context,
            lambda: self._store.create_campaign(
                app_id, request_id, definition, request.paused, now
            )[0],
        )
        return pb.CreateCampaignResponse(campaign=campaign_message(campaign))

    async def _require_id(self, context: grpc.aio.ServicerContext, field: str, value: str) -> str:
        if not value:
            await abort(context, invalid_argument([Violation(field, "required")]))
        return value

    async def UpdateCampaign(
        self, request: pb.UpdateCampaignRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateCampaignResponse:
        app_id = current_app_id()
        campaign_id = await self._require_id(
            context, "campaign.campaign_id", request.campaign.campaign_id
        )
        paths = list(request.update_mask.paths)
        unknown = [p for p in paths if p not in UPDATABLE]
        if unknown:
            await abort(
                context,
                invalid_argument([Violation("update_mask", f"cannot update {', '.join(unknown)}")]),
            )
        message = request.campaign
        current = await self._run(context, lambda: self._store.campaign(app_id, campaign_id))
        if paths:
            message = campaign_message(current)
            request.update_mask.MergeMessage(
                request.campaign, message, replace_message_field=True, replace_repeated_field=True
            )
        definition = await self._definition(context, message)
        await check_segment(context, self._segments, definition, current.definition)
        data = definition.model_dump(mode="json")
        campaign = await self._run(
            context,
            lambda: self._store.change(
                app_id,
                campaign_id,
                "update",
                definition=data,
                expected_version=request.expected_version,
            ),
        )
        return pb.UpdateCampaignResponse(campaign=campaign_message(campaign))

    async def GetCampaign(
        self, request: pb.GetCampaignRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCampaignResponse:
        app_id = current_app_id()
        campaign_id = await self._require_id(context, "campaign_id", request.campaign_id)
        campaign = await self._run(context, lambda: self._store.campaign(app_id, campaign_id))
        if request.version <= 0 or request.version == campaign.definition_version:
            return pb.GetCampaignResponse(campaign=campaign_message(campaign))
        data = await asyncio.to_thread(
            self._store.definition_at, app_id, campaign_id, request.version
        )
        if data is None:
            await abort(context, campaign_not_found(campaign_id, request.version))
        message = campaign_message(campaign, CampaignDefinition.model_validate(data))
        message.version = request.version
        return pb.GetCampaignResponse(campaign=message)

    async def ListCampaigns(
        self, request: pb.ListCampaignsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCampaignsResponse:
        app_id = current_app_id()
        offset = paging.decode(request.page_token)
        if offset is None:
            await abort(
                context, invalid_argument([Violation("page_token", "not a token we issued")])
            )
        size = paging.page_size(request.page_size)
        await asyncio.to_thread(self._catalog.refresh)
        views = sorted(
            (
                v
                for v in self._catalog.of_app(app_id)
                if request.show_archived or v.state is not CampaignState.ARCHIVED
            ),
            key=lambda v: (-v.created_us, v.campaign_id),
        )
        page = views[offset : offset + size]
        return pb.ListCampaignsResponse(
            campaigns=[
                convert.campaign_proto(
                    v.campaign_id,
                    v.live.definition,
                    v.state,
                    v.live.version,
                    v.created_us,
                    v.updated_us,
                )
                for v in page
            ],
            next_page_token=paging.encode(offset + size) if offset + size < len(views) else "",
        )

    async def _transition(
        self, context: grpc.aio.ServicerContext, campaign_id: str, command: str
    ) -> pb.Campaign:
        app_id = current_app_id()
        await self._require_id(context, "campaign_id", campaign_id)
        campaign = await self._run(
            context, lambda: self._store.change(app_id, campaign_id, command)
        )
        if campaign.state is not CampaignState.ACTIVE:
            # Nothing pending goes out any more (the dispatcher also checks).
            async with self._pool.connection() as conn:
                await db.cancel_campaigns(conn, [campaign_id], f"campaign_{campaign.state.value}")
        return campaign_message(campaign)

    async def PauseCampaign(
        self, request: pb.PauseCampaignRequest, context: grpc.aio.ServicerContext
    ) -> pb.PauseCampaignResponse:
        return pb.PauseCampaignResponse(
            campaign=await self._transition(context, request.campaign_id, "pause")
        )

    async def ResumeCampaign(
        self, request: pb.ResumeCampaignRequest, context: grpc.aio.ServicerContext
    ) -> pb.ResumeCampaignResponse:
        return pb.ResumeCampaignResponse(
            campaign=await self._transition(context, request.campaign_id, "resume")
        )

    async def ArchiveCampaign(
        self, request: pb.ArchiveCampaignRequest, context: grpc.aio.ServicerContext
    ) -> pb.ArchiveCampaignResponse:
        return pb.ArchiveCampaignResponse(
            campaign=await self._transition(context, request.campaign_id, "archive")
        )

    async def GetCampaignStats(
        self, request: pb.GetCampaignStatsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCampaignStatsResponse:
        app_id = current_app_id()
        campaign_id = await self._require_id(context, "campaign_id", request.campaign_id)
        campaign = await self._run(context, lambda: self._store.campaign(app_id, campaign_id))
        counts = await reports.group_counts(self._pool, app_id, campaign_id)
        names = [v.name for v in campaign.definition.variants]
        names += [n for n in counts if n not in names and n not in (CONTROL, HOLDOUT)]
        control = counts.get(CONTROL, reports.GroupCounts(CONTROL))
        groups = []
        for name in [*names, CONTROL]:
            c = counts.get(name, reports.GroupCounts(name))
            group = pb.GroupStats(
                name=name,
                is_control=c.is_control,
                triggered=c.triggered,
                suppressed=c.suppressed,
                sent=c.sent,
                failed=c.failed,
                pending=c.pending,
                cancelled=c.cancelled,
                converted=c.converted,
                conversion_rate=rate(c.converted, c.exposed),
            )
            if not c.is_control:
                lift = uplift(
                    c.converted, c.exposed, control.converted, control.exposed, CONFIDENCE_LEVEL
                )
                if lift is not None:
                    group.uplift.CopyFrom(
                        pb.Uplift(
                            difference=lift.difference,
                            lower=lift.lower,
                            upper=lift.upper,
                            relative=lift.relative,
                        )
                    )
            groups.append(group)
        holdout = counts.get(HOLDOUT)
        return pb.GetCampaignStatsResponse(
            campaign_id=campaign_id,
            groups=groups,
            global_holdout=holdout.triggered if holdout else 0,
            confidence_level=CONFIDENCE_LEVEL,
        )

    async def ListDeliveries(
        self, request: pb.ListDeliveriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDeliveriesResponse:
        app_id = current_app_id()
        user_id = request.user_id
        if not user_id and not request.campaign_id:
            await abort(
                context,
                invalid_argument([Violation("user_id", "required (or give campaign_id)")]),
            )
        offset = paging.decode(request.page_token)
        if offset is None:
            await abort(
                context, invalid_argument([Violation("page_token", "not a token we issued")])
            )
        size = paging.page_size(request.page_size)
        records = await reports.user_deliveries(
            self._pool, app_id, user_id, request.campaign_id, offset, size + 1
        )
        out = pb.ListDeliveriesResponse(
            next_page_token=paging.encode(offset + size) if len(records) > size else ""
        )
        for r in records[:size]:
            delivery = out.deliveries.add(
                send_id=r.send_id,
                campaign_id=r.campaign_id,
                campaign_version=r.campaign_version,
                user_id=r.user_id,
                change_id=r.change_id,
                channel=convert.CHANNEL_NUMBERS.get(convert.m.Channel(r.channel), 0),
                variant=r.variant,
                status=_STATUS.get(r.status, pb.Delivery.STATUS_UNSPECIFIED),
                reason=r.reason,
                attempts=r.attempts,
                last_error=shown(r.last_error),  # provider replies may carry controls
            )
            delivery.decide_time.FromDatetime(r.decided_at)
            delivery.due_time.FromDatetime(r.due_at)
            if r.sent_at is not None:
                delivery.send_time.FromDatetime(r.sent_at)
            if r.converted_at is not None:
                delivery.convert_time.FromDatetime(r.converted_at)
        return out

    async def GetMessagingPolicy(
        self, request: pb.GetMessagingPolicyRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMessagingPolicyResponse:
        app_id = current_app_id()
        found = await asyncio.to_thread(self._store.policy, app_id)
        if found is None:
            return pb.GetMessagingPolicyResponse(
                policy=convert.policy_proto(convert.m.MessagingPolicy(), 0)
            )
        return pb.GetMessagingPolicyResponse(
            policy=convert.policy_proto(found.policy, found.policy_version)
        )

    async def UpdateMessagingPolicy(
        self, request: pb.UpdateMessagingPolicyRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateMessagingPolicyResponse:
        app_id = current_app_id()
        policy, problems = convert.policy(request.policy)
        if policy is not None:
            problems = check_policy(policy)
        if problems or policy is None:
            await abort(context, invalid_argument(problems, prefix="policy."))
        data = policy.model_dump(mode="json")
        saved = await asyncio.to_thread(self._store.update_policy, app_id, data)
        return pb.UpdateMessagingPolicyResponse(
            policy=convert.policy_proto(saved.policy, saved.policy_version)
        )
