"""Broadcast runs: fire each due one-off or cron run once, to the segment's members.

A run is recorded before its members are decided; its decisions are keyed by
(campaign, user, run), so a run interrupted by a crash is simply run again and
nobody is decided twice. Runs missed by more than `misfire_s` (the service was
down) are recorded as missed, not sent late.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from psycopg_pool import AsyncConnectionPool

from services.campaign.adapters.catalog import CampaignCatalog, CampaignView
from services.campaign.decisions import Decider
from services.campaign.domain.changes import Change
from services.campaign.domain.clock import Clock
from services.campaign.domain.model import BroadcastTrigger
from services.campaign.domain.ports import SegmentMembers
from services.campaign.domain.schedule import fire_times, run_change_id
from services.campaign.schema import BROADCAST_RUNS
from services.eventlog.events import us_to_datetime

_log = structlog.get_logger("campaign.broadcasts")


class BroadcastScheduler:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        catalog: CampaignCatalog,
        members: SegmentMembers,
        decider: Decider,
        clock: Clock,
        *,
        misfire_s: float = 3600.0,
        chunk: int = 1000,
        poll_s: float = 5.0,
    ) -> None:
        self._pool = pool
        self._catalog = catalog
        self._members = members
        self._decider = decider
        self._clock = clock
        self._misfire_us = int(misfire_s * 1_000_000)
        self._chunk = chunk
        self._poll_s = poll_s

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.tick()
            except Exception as error:
                _log.warning("broadcast tick failed", error=repr(error))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._poll_s)

    async def tick(self) -> int:
        """Fire every run due by now; how many runs were sent."""
        await asyncio.to_thread(self._catalog.refresh)
        now = self._clock.now_us()
        fired = 0
        for view in self._catalog.broadcasts():
            trigger = view.live.definition.trigger
            assert isinstance(trigger, BroadcastTrigger)
            unfinished, last = await self._runs(view.campaign_id)
            for fire_us in unfinished:
                fired += await self._fire(view, fire_us)
            start = view.live.definition.start_us or view.created_us
            for fire_us in fire_times(trigger, max(last, start - 1), now):
                if fire_us < now - self._misfire_us:
                    await self._record(view, fire_us, "missed")
                    continue
                fired += await self._fire(view, fire_us)
        return fired

    async def _runs(self, campaign_id: str) -> tuple[list[int], int]:
        """(fire times of runs started but not finished, latest fire time or 0)."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                f"SELECT (extract(epoch FROM fire_at) * 1000000)::bigint, status"
                f" FROM {BROADCAST_RUNS} WHERE campaign_id = %s",
                (campaign_id,),
            )
            rows = await cursor.fetchall()
        unfinished = sorted(fire for fire, status in rows if status == "started")
        return unfinished, max((fire for fire, _ in rows), default=0)

    async def _record(self, view: CampaignView, fire_us: int, status: str) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                f"INSERT INTO {BROADCAST_RUNS} (campaign_id, fire_at, app_id, status, started_at)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (
                    view.campaign_id,
                    us_to_datetime(fire_us),
                    view.live.app_id,
                    status,
                    us_to_datetime(self._clock.now_us()),
                ),
            )

    async def _fire(self, view: CampaignView, fire_us: int) -> int:
        trigger = view.live.definition.trigger
        assert isinstance(trigger, BroadcastTrigger)
        await self._record(view, fire_us, "started")
        app_id = view.live.app_id
        members = await self._members.members(app_id, trigger.segment_id)
        change_id = run_change_id(view.campaign_id, fire_us)
        for i in range(0, len(members), self._chunk):
            changes = [
                Change(
                    change_id=change_id,
                    app_id=app_id,
                    user_id=user_id,
                    kind="broadcast",
                    recorded_us=fire_us,
                    segment_id=trigger.segment_id,
                )
                for user_id in members[i : i + self._chunk]
            ]
            await self._decider.process(changes, broadcast_of=view.campaign_id)
        async with self._pool.connection() as conn:
            await conn.execute(
                f"UPDATE {BROADCAST_RUNS} SET status = 'done', members = %s, finished_at = %s"
                " WHERE campaign_id = %s AND fire_at = %s",
                (
                    len(members),
                    us_to_datetime(self._clock.now_us()),
                    view.campaign_id,
                    us_to_datetime(fire_us),
                ),
            )
        _log.info("broadcast run", campaign_id=view.campaign_id, members=len(members))
        return 1
