"""Erased users in campaign: their inbox messages go, their deliveries lose their payload.

An erasure is audited in the keyring's table (`cohortflow_erasures`, eventlog's, never
deleted). This loop finds the erasures it has not swept yet and, in one transaction per
erasure, deletes the user's inbox messages, blanks the address and content of their
deliveries (the rows stay: counts and statuses feed reports), cancels those still due
(reason "erased") and records the sweep. Decisions refuse an erased user on their own
(the profile reader's `erased`), so nothing new is sent meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from psycopg_pool import AsyncConnectionPool

from services.campaign.domain.eligibility import CANCELLED
from services.campaign.schema import DELIVERIES, ERASURES_SWEPT, INBOX
from services.eventlog.keyring import ERASURES_TABLE

_log = structlog.get_logger("campaign.erasures")
ERASED = "erased"

_PENDING = f"""
SELECT e.app_id, e.request_id, e.user_id, e.subjects FROM {ERASURES_TABLE} e
WHERE NOT EXISTS (
    SELECT 1 FROM {ERASURES_SWEPT} s WHERE s.app_id = e.app_id AND s.request_id = e.request_id
)
ORDER BY e.requested_at LIMIT 100
"""


class ErasureSweeper:
    def __init__(self, pool: AsyncConnectionPool, *, poll_s: float = 2.0) -> None:
        self._pool = pool
        self._poll_s = poll_s

    async def sweep(self) -> int:
        """Sweep every erasure not swept yet; how many it swept."""
        async with self._pool.connection() as conn:
            pending = await (await conn.execute(_PENDING)).fetchall()
        for app_id, request_id, user_id, subjects in pending:
            users = sorted({user_id, *subjects})
            async with self._pool.connection() as conn, conn.transaction():
                await conn.execute(
                    f"DELETE FROM {INBOX} WHERE app_id = %s AND user_id = ANY(%s)",
                    (app_id, users),
                )
                await conn.execute(
                    f"UPDATE {DELIVERIES} SET content = NULL, address = '',"
                    " status = CASE WHEN status IN ('pending', 'sending') THEN %s ELSE status END,"
                    " reason = CASE WHEN status IN ('pending', 'sending') THEN %s ELSE reason END"
                    " WHERE app_id = %s AND user_id = ANY(%s)",
                    (CANCELLED, ERASED, app_id, users),
                )
                await conn.execute(
                    f"INSERT INTO {ERASURES_SWEPT} (app_id, request_id) VALUES (%s, %s)"
                    " ON CONFLICT DO NOTHING",
                    (app_id, request_id),
                )
            _log.info("erased user swept", app_id=app_id, request_id=request_id)
        return len(pending)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sweep()
            except Exception as error:
                _log.warning("erasure sweep failed", error=repr(error))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._poll_s)
