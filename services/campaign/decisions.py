"""Deciding a batch of changes: one transaction for the whole batch.

For each change, in order: recognise it if it was seen before (a redelivery:
skip), cancel pending sends whose condition it breaks, then decide every campaign
it triggers (eligibility, variant or control, rendered content) and record the
decision. In-app sends due at once go into the inbox in the same transaction.
Only after the commit may the caller ack the messages.

Content is rendered by the Renderer port (worker processes) while the event loop goes
on. A template that fails for a user fails that one send, with its reason; every other
decision of the batch stands. Decisions are made in passes: the first finds what must
be rendered, the next decides again knowing each outcome (a failed send does not count
against caps), until nothing new needs rendering.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from services.campaign import metrics
from services.campaign.adapters import deliveries as db
from services.campaign.adapters.catalog import CampaignCatalog, CampaignView
from services.campaign.domain.assignment import send_id
from services.campaign.domain.changes import Change, broken_conditions, triggers
from services.campaign.domain.clock import Clock
from services.campaign.domain.eligibility import (
    DEFAULT_OPT_IN_CHANNELS,
    FAILED,
    PENDING,
    SUPPRESSED,
    Decision,
    Profile,
    UserHistory,
    active_at,
    decide,
)
from services.campaign.domain.model import Channel
from services.campaign.domain.ports import (
    ProfileReader,
    Renderer,
    RenderJob,
    TriggerEvent,
    TriggerEvents,
)
from services.campaign.domain.templates import (
    MISSING_VARIABLE,
    Rendered,
    Unrendered,
    build_context,
)

# Caps look back (and ahead) at most this far; longer windows are cut to it.
MAX_CAP_WINDOW_S = 31 * 86_400


@dataclass
class BatchOutcome:
    changes: int = 0
    redelivered: int = 0
    decided: int = 0
    cancelled: int = 0
    # In-app messages put into the inbox in the same transaction.
    delivered: int = 0


class Decider:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        catalog: CampaignCatalog,
        profiles: ProfileReader,
        events: TriggerEvents,
        clock: Clock,
        renderer: Renderer,
        *,
        opt_in_channels: frozenset[Channel] = DEFAULT_OPT_IN_CHANNELS,
        on_decided: Callable[[], None] = lambda: None,
    ) -> None:
        self._pool = pool
        self._catalog = catalog
        self._profiles = profiles
        self._events = events
        self._clock = clock
        self._renderer = renderer
        self._opt_in = opt_in_channels
        self._on_decided = on_decided

    async def process(self, changes: Sequence[Change], *, broadcast_of: str = "") -> BatchOutcome:
        """Decide and record a batch. `broadcast_of`: members of that campaign's broadcast
        run (deduplicated by the delivery log's unique key instead of change ids)."""
        await asyncio.to_thread(self._catalog.refresh)
        now = self._clock.now_us()
        outcome = BatchOutcome(changes=len(changes))
        async with self._pool.connection() as conn, conn.transaction():
            if broadcast_of:
                view = self._catalog.get(broadcast_of)
                fresh = list(changes)
                work = [(c, [view] if view is not None and view.active else []) for c in fresh]
            else:
                unique = list({c.change_id: c for c in changes}.values())
                new = await db.mark_seen(conn, [c.change_id for c in unique], now)
                fresh = [c for c in unique if c.change_id in new]
                work = [(c, self._triggered(c)) for c in fresh]
            outcome.redelivered = len(changes) - len(fresh)
            keys = sorted({(c.app_id, c.user_id) for c in fresh})
            await db.lock_users(conn, keys)
            breaks = []
            for change in fresh:
                condition, reason = broken_conditions(change)
                if condition:
                    breaks.append(
                        (change.app_id, change.user_id, condition, change.user_sequence, reason)
                    )
            outcome.cancelled = await db.cancel_pending(conn, breaks)
            rows = await self._decide(conn, work, keys, now) if any(v for _, v in work) else []
            outcome.decided = await db.insert_deliveries(conn, rows)
            # In-app sends due now go into the inbox with their decision: no wait for a
            # dispatch round. Delayed ones (and provider channels) are the dispatcher's.
            due_in_app = [
                r.send_id
                for r in rows
                if r.channel == Channel.IN_APP.value and r.status == PENDING and r.due_us <= now
            ]
            outcome.delivered = await db.deliver_in_app_now(conn, due_in_app, self._clock.now_us())
        metrics.record_decisions(rows)
        if outcome.delivered:
            metrics.SENDS.labels(Channel.IN_APP.value, "sent").inc(outcome.delivered)
        if len(due_in_app) < sum(r.status == PENDING for r in rows):
            self._on_decided()  # sends for later or for a provider: the dispatcher's
        return outcome

    def _triggered(self, change: Change) -> list[CampaignView]:
        at = change.recorded_us or self._clock.now_us()
        return [
            view
            for view in self._catalog.active_of_app(change.app_id)
            if triggers(view.live.definition.trigger, change)
            and active_at(view.live.definition, at)
        ]

    async def _decide(
        self,
        conn: object,
        work: list[tuple[Change, list[CampaignView]]],
        keys: list[tuple[str, str]],
        now: int,
    ) -> list[db.DeliveryRow]:
        triggered_keys = sorted({(c.app_id, c.user_id) for c, views in work if views})
        campaign_ids = sorted({v.campaign_id for _, views in work for v in views})
        profiles = await self._profiles.profiles(triggered_keys)
        histories = await db.history(
            conn,  # type: ignore[arg-type]
            triggered_keys,
            campaign_ids,
            now - MAX_CAP_WINDOW_S * 1_000_000,
        )
        events = await self._trigger_events(work)
        outcomes: dict[str, Rendered | Unrendered] = {}
        while True:
            rows: list[db.DeliveryRow] = []
            wanted: list[tuple[str, RenderJob]] = []
            fresh_histories = {k: h.copy() for k, h in histories.items()}
            for change, views in work:
                self._cancel_in_batch(rows, change)
                key = (change.app_id, change.user_id)
                profile = profiles.get(key) or Profile(user_id=change.user_id)
                history = fresh_histories.setdefault(key, UserHistory())
                for view in views:
                    row, job = self._row(view, change, profile, history, events, now, outcomes)
                    rows.append(row)
                    if job is not None:
                        wanted.append((row.send_id, job))
            if not wanted:
                return rows
            rendered = await self._renderer.render([job for _, job in wanted])
            outcomes.update(zip((send for send, _ in wanted), rendered, strict=True))

    @staticmethod
    def _cancel_in_batch(rows: list[db.DeliveryRow], change: Change) -> None:
        """Pending sends decided earlier in this batch whose condition this change breaks."""
        condition, reason = broken_conditions(change)
        if not condition:
            return
        for i, row in enumerate(rows):
            if (
                row.status == PENDING
                and row.condition == condition
                and (row.app_id, row.user_id) == (change.app_id, change.user_id)
            ):
                rows[i] = db.DeliveryRow(
                    **{**row.__dict__, "status": "cancelled", "reason": reason}
                )

    async def _trigger_events(
        self, work: list[tuple[Change, list[CampaignView]]]
    ) -> dict[tuple[str, str], TriggerEvent]:
        wanted: dict[str, dict[str, str]] = {}
        for change, views in work:
            if change.event_ids and any(v.needs_event for v in views):
                wanted.setdefault(change.app_id, {})[change.event_ids[0]] = change.user_id
        out: dict[tuple[str, str], TriggerEvent] = {}
        for app_id, users in wanted.items():
            for event_id, found in (await self._events.events(app_id, users)).items():
                out[(app_id, event_id)] = found
        return out

    def _row(
        self,
        view: CampaignView,
        change: Change,
        profile: Profile,
        history: UserHistory,
        events: dict[tuple[str, str], TriggerEvent],
        now: int,
        outcomes: dict[str, Rendered | Unrendered],
    ) -> tuple[db.DeliveryRow, RenderJob | None]:
        """The decision, and what to render first if its content is not known yet."""
        live = view.live
        definition = live.definition
        policy = self._catalog.policy(change.app_id)
        decision = decide(live, policy, change, profile, history, now, self._opt_in)
        sid = send_id(live.campaign_id, live.version, change.user_id, change.change_id)
        content, error, job = None, "", None
        if decision.status == PENDING:
            outcome = outcomes.get(sid)
            if outcome is None:
                variant = next(v for v in definition.variants if v.name == decision.group)
                event = (
                    events.get((change.app_id, change.event_ids[0])) if change.event_ids else None
                )
                context = build_context(
                    profile, change, event, live.campaign_id, definition.name, variant.name
                )
                key = f"{live.campaign_id}:{live.version}:{variant.name}"
                job = RenderJob(key, variant.template, context)
            elif isinstance(outcome, Unrendered):
                failed = outcome.reason != MISSING_VARIABLE
                status = FAILED if failed else SUPPRESSED
                decision = Decision(decision.group, status, outcome.reason)
                error = outcome.detail if failed else ""
            else:
                content = {
                    "title": outcome.title,
                    "body": outcome.body,
                    "data": outcome.data,
                    "sender": definition.email_from,
                }
        history.record(live.campaign_id, definition.channel.value, decision, now)
        sent_to = profile.address(definition.channel, definition) if content else ""
        row = db.DeliveryRow(
            send_id=sid,
            app_id=change.app_id,
            campaign_id=live.campaign_id,
            campaign_version=live.version,
            user_id=change.user_id,
            change_id=change.change_id,
            trigger_sequence=change.user_sequence,
            channel=definition.channel.value,
            grp=decision.group,
            status=decision.status,
            reason=decision.reason,
            condition=decision.condition,
            address=sent_to,
            content=content,
            decided_us=now,
            due_us=decision.due_us or now,
            last_error=error,
        )
        return row, job
