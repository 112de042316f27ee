"""Segment members from the projector's read contract, the view `contract_segment_members_v1`
(see the README, "Contracts between services"), never its tables.

A broadcast run sends to whoever is in the segment when it fires: the rows of the
segment's live version, in user id order (the same order on a retried run).
"""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

SEGMENT_MEMBERS_V1 = "contract_segment_members_v1"
_SELECT = (
    f"SELECT user_id FROM {SEGMENT_MEMBERS_V1}"
    " WHERE app_id = %s AND segment_id = %s ORDER BY user_id"
)


class PostgresSegmentMembers:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def members(self, app_id: str, segment_id: str) -> list[str]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(_SELECT, (app_id, segment_id))
            return [row[0] for row in await cursor.fetchall()]
