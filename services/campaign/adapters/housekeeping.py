"""Forgetting change ids once the stream can no longer redeliver them.

A change can come back only while the stream keeps it (CHANGES_MAX_AGE_DAYS), so
its id need not be remembered longer than that (plus a margin).
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from psycopg_pool import AsyncConnectionPool

from services.campaign.domain.clock import Clock
from services.campaign.schema import CHANGES_SEEN
from services.eventlog.events import us_to_datetime

_log = structlog.get_logger("campaign.housekeeping")


class Housekeeper:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        clock: Clock,
        *,
        retention_days: float,
        interval_s: float = 3600.0,
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._retention_us = int(retention_days * 86_400 * 1_000_000)
        self._interval_s = interval_s

    async def prune(self) -> int:
        cutoff = us_to_datetime(self._clock.now_us() - self._retention_us)
        async with self._pool.connection() as conn:
            cursor = await conn.execute(f"DELETE FROM {CHANGES_SEEN} WHERE seen_at < %s", (cutoff,))
            return cursor.rowcount

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                pruned = await self.prune()
                if pruned:
                    _log.info("forgot old change ids", count=pruned)
            except Exception as error:
                _log.warning("pruning failed", error=repr(error))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval_s)
