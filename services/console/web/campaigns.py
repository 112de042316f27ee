"""Campaign pages: list, create from the CLI's campaign form, pause/resume, stats, deliveries."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import yaml
from cohortflow.campaigns.v1 import campaigns_pb2 as cpb
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from services.common.campaign_form import (
    FormError,
    campaign_from_form,
    campaign_to_form,
    trigger_text,
)
from services.console.backends import BackendError
from services.console.web import charts, inputs
from services.console.web.access import CSRF_FIELD, require
from services.console.web.names import REASONS
from services.console.web.render import page

MAX_FORM = 100_000
RECENT = 50  # deliveries shown on a campaign's page
EXAMPLE_FORM = """\
name: Welcome back
trigger:
  lifecycle: {to_states: [reactivated]}
channel: in_app
variants:
  - name: A
    template: {title: "Welcome back, {{ user.traits.name }}", body: "We kept your cart."}
  - name: B
    template: {title: "Good to see you again", body: "Here is 10% off."}
control_percent: 10
conversion_goal: {event_name: Order Completed, attribution_window: 7d}
"""


class _NoAliases(yaml.SafeLoader):
    """YAML without anchors/aliases (no alias bombs)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.YAMLError(f"aliases are not allowed (line {event.start_mark.line + 1})")
        return super().compose_node(parent, index)


async def campaign_list(request: Request) -> Response:
    access = await require(request)
    c = access.clients
    reply = await c.call(c.campaigns.ListCampaigns, cpb.ListCampaignsRequest(page_size=200))
    triggers = {x.campaign_id: trigger_text(x) for x in reply.campaigns}
    return page(request, "campaigns.html", access, campaigns=reply.campaigns, triggers=triggers)


def _new_page(request: Request, access: Any, text: str, error: str, status: int = 200) -> Response:
    return page(
        request,
        "campaign_new.html",
        access,
        form_text=text,
        error=error,
        request_id=secrets.token_urlsafe(16),
        status=status,
    )


async def campaign_new(request: Request) -> Response:
    access = await require(request)
    return _new_page(request, access, EXAMPLE_FORM, "")


async def campaign_create(request: Request) -> Response:
    form = await inputs.form(request)
    access = await require(request, editor=True, csrf=str(form.get(CSRF_FIELD, "")))
    text = inputs.text(form.get("form"), "form", max_len=MAX_FORM, required=True)
    request_id = inputs.ident(form.get("request_id"), "request_id")
    paused = form.get("paused") == "on"
    try:
        data = yaml.load(text, Loader=_NoAliases)
        campaign = campaign_from_form(data)
    except yaml.YAMLError as error:
        return _new_page(request, access, text, f"form: not valid YAML ({error})", 400)
    except (FormError, RecursionError) as error:
        return _new_page(request, access, text, str(error) or "form: nests too deep", 400)
    c = access.clients
    try:
        reply = await c.call(
            c.campaigns.CreateCampaign,
            cpb.CreateCampaignRequest(campaign=campaign, request_id=request_id, paused=paused),
        )
    except BackendError as error:
        if error.status >= 500:
            raise
        detail = "; ".join(f"{f}: {m}" for f, m in error.fields) or error.message
        return _new_page(request, access, text, detail, error.status)
    return RedirectResponse(
        f"/apps/{access.app_id}/campaigns/{reply.campaign.campaign_id}", status_code=303
    )


async def campaign_detail(request: Request) -> Response:
    access = await require(request)
    c = access.clients
    campaign_id = inputs.ident(request.path_params["campaign_id"], "campaign_id")
    who = inputs.ident(request.query_params.get("user"), "user", required=False)
    campaign = (
        await c.call(c.campaigns.GetCampaign, cpb.GetCampaignRequest(campaign_id=campaign_id))
    ).campaign
    # Without a user: the campaign's most recent deliveries to anyone.
    stats, listed = await asyncio.gather(
        c.call(c.campaigns.GetCampaignStats, cpb.GetCampaignStatsRequest(campaign_id=campaign_id)),
        c.call(
            c.campaigns.ListDeliveries,
            cpb.ListDeliveriesRequest(user_id=who, campaign_id=campaign_id, page_size=RECENT),
        ),
    )
    control = [g for g in stats.groups if g.is_control]
    variants = [
        {
            "name": g.name,
            "difference": g.uplift.difference,
            "lower": g.uplift.lower,
            "upper": g.uplift.upper,
        }
        for g in stats.groups
        if not g.is_control and g.sent
    ]
    # Uplift needs users sent a variant, users held back in the control group, and a
    # conversion on either side (else it is 0 within 0, which says nothing).
    measured = (
        bool(variants)
        and bool(control)
        and control[0].triggered > 0
        and any(g.converted for g in stats.groups)
    )
    suppressed: dict[str, int] = {}
    for g in stats.groups:
        for reason, n in g.suppressed.items():
            suppressed[reason] = suppressed.get(reason, 0) + n
    return page(
        request,
        "campaign.html",
        access,
        campaign=campaign,
        trigger=trigger_text(campaign),
        form_yaml=yaml.safe_dump(campaign_to_form(campaign), sort_keys=False, allow_unicode=True),
        stats=stats,
        suppressed=[
            (reason, n, REASONS.get(reason, ""))
            for reason, n in sorted(suppressed.items(), key=lambda kv: -kv[1])
        ],
        who=who,
        deliveries=list(listed.deliveries),
        more_deliveries=bool(listed.next_page_token),
        figures={"uplift": charts.uplift(variants)} if measured else {},
    )


async def _state_change(request: Request, pause: bool) -> Response:
    form = await inputs.form(request)
    access = await require(request, editor=True, csrf=str(form.get(CSRF_FIELD, "")))
    campaign_id = inputs.ident(request.path_params["campaign_id"], "campaign_id")
    c = access.clients
    if pause:
        await c.call(c.campaigns.PauseCampaign, cpb.PauseCampaignRequest(campaign_id=campaign_id))
    else:
        await c.call(c.campaigns.ResumeCampaign, cpb.ResumeCampaignRequest(campaign_id=campaign_id))
    return RedirectResponse(f"/apps/{access.app_id}/campaigns/{campaign_id}", status_code=303)


async def pause(request: Request) -> Response:
    return await _state_change(request, True)


async def resume(request: Request) -> Response:
    return await _state_change(request, False)


def routes() -> list[Route]:
    return [
        Route("/campaigns", campaign_list),
        Route("/campaigns/new", campaign_new, methods=["GET"]),
        Route("/campaigns/new", campaign_create, methods=["POST"]),
        Route("/campaigns/{campaign_id}", campaign_detail),
        Route("/campaigns/{campaign_id}/pause", pause, methods=["POST"]),
        Route("/campaigns/{campaign_id}/resume", resume, methods=["POST"]),
    ]
