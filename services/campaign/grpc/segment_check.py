"""A campaign's segment must exist in the caller's app: asked of the SegmentDirectory port."""

from __future__ import annotations

import grpc

from services.campaign.domain.model import BroadcastTrigger, CampaignDefinition, SegmentTrigger
from services.campaign.domain.ports import ARCHIVED, MISSING, SegmentDirectory, SegmentsUnavailable
from services.campaign.domain.validation import Violation
from services.common.grpc.errors import abort, invalid_argument, unavailable


async def check_segment(
    context: grpc.aio.ServicerContext,
    segments: SegmentDirectory,
    definition: CampaignDefinition,
    before: CampaignDefinition | None = None,
) -> None:
    """Abort unless the trigger's segment exists and is not archived (asked with the
    caller's own credentials); an update that keeps its segment is not asked about it.
    INVALID_ARGUMENT naming the field, or UNAVAILABLE when segments cannot be looked up."""
    trigger = definition.trigger
    if not isinstance(trigger, SegmentTrigger | BroadcastTrigger):
        return
    if before is not None and getattr(before.trigger, "segment_id", None) == trigger.segment_id:
        return
    kind = "segment" if isinstance(trigger, SegmentTrigger) else "broadcast"
    field = f"trigger.{kind}.segment_id"
    authorization = next(
        (str(v) for k, v in context.invocation_metadata() or () if k == "authorization"), ""
    )
    try:
        found = await segments.lookup(authorization, trigger.segment_id)
    except SegmentsUnavailable as error:
        await abort(context, unavailable(f"cannot check campaign.{field}: {error}; retry"))
    if found in (MISSING, ARCHIVED):
        problem = "is archived" if found == ARCHIVED else "does not exist in this app"
        violation = Violation(field, f"segment {trigger.segment_id!r} {problem}")
        await abort(context, invalid_argument([violation], prefix="campaign."))
