"""Sends that are due and not dispatched: counted per channel, with the oldest one's age.

A send is due once its `due_at` has passed while it is still pending (or leased by a
process that died: its lease ran out). A few due sends are normal (the dispatcher
polls every CAMPAIGN_DISPATCH_POLL_S); a growing count or an old oldest one means the
dispatcher cannot keep up or is not running. The count stops at `DUE_CAP`, so the
query stays cheap however large a backlog grows (it walks the partial due-index).
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from psycopg_pool import AsyncConnectionPool

from services.campaign import metrics
from services.campaign.domain.clock import Clock
from services.campaign.schema import DELIVERIES
from services.eventlog.events import us_to_datetime

_log = structlog.get_logger("campaign.backlog")

_DUE = f"""
    SELECT channel, count(*), min(due_at) FROM (
        SELECT channel, due_at FROM {DELIVERIES}
        WHERE due_at <= %(now)s
          AND (status = 'pending' OR (status = 'sending' AND lease_until < %(now)s))
        ORDER BY due_at LIMIT %(cap)s
    ) due GROUP BY channel
"""


class DueSends:
    """Keeps `cohortflow_campaign_sends_due{,_oldest_seconds}` fresh."""

    def __init__(
        self, pool: AsyncConnectionPool, clock: Clock, *, channels: set[str], poll_s: float
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._channels = set(channels)  # reported as 0 while nothing of theirs is due
        self._poll_s = poll_s

    async def refresh(self) -> dict[str, tuple[int, float]]:
        """Per channel with due sends: (count, seconds the oldest has waited)."""
        now_us = self._clock.now_us()
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                _DUE, {"now": us_to_datetime(now_us), "cap": metrics.DUE_CAP}
            )
            rows = await cursor.fetchall()
        due = {
            channel: (int(count), max(0.0, now_us / 1e6 - oldest.timestamp()))
            for channel, count, oldest in rows
        }
        self._channels |= due.keys()
        for channel in self._channels:
            count, age = due.get(channel, (0, 0.0))
            metrics.SENDS_DUE.labels(channel).set(count)
            metrics.SENDS_DUE_OLDEST.labels(channel).set(age)
        return due

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.refresh()
            except Exception as error:  # the gauges keep their last values
                _log.debug("counting due sends failed", error=repr(error))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._poll_s)
