"""Recording the outcomes of provider calls as they come in, several sharing a statement.

The dispatcher holds a call's slot (one of CAMPAIGN_DISPATCH_CONCURRENCY) until the
call's outcome is committed. A process killed at any moment therefore leaves at most
that many calls unrecorded, to be made again with the same key once their lease runs
out; recording a whole round at its end would leave every call of the round that had
already reached the provider (up to CAMPAIGN_DISPATCH_BATCH) to be repeated.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from psycopg_pool import AsyncConnectionPool

from services.campaign.adapters import deliveries as db
from services.campaign.domain.clock import Clock


class OutcomeLog:
    def __init__(self, pool: AsyncConnectionPool, clock: Clock) -> None:
        self._pool = pool
        self._clock = clock
        self._waiting: list[tuple[db.Outcome, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def record(self, outcome: db.Outcome) -> None:
        """Return once `outcome` is committed, together with whatever else came in while
        the previous write was under way (group commit)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((outcome, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        await done

    async def _write(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                await self._finish([outcome for outcome, _ in batch])
            except Exception as error:  # the calls stay leased; they are retried later
                for _, done in batch:
                    if not done.done():
                        done.set_exception(error)
            else:
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)

    async def _finish(self, outcomes: Sequence[db.Outcome]) -> None:
        async with self._pool.connection() as conn:
            await db.finish(conn, outcomes, self._clock.now_us())
