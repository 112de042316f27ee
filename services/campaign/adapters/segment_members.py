"""Segment members from the projector's read contract, the view `contract_segment_members_v1`
(see the README, "Contracts between services"), never its tables.

A broadcast run sends to whoever is in the segment when it fires: the rows of the
segment's live version, in user id order (the same order on a retried run), from every
database of the deployment (contract_reads.py), merged.
"""

from __future__ import annotations

import heapq

from psycopg_pool import AsyncConnectionPool

from services.campaign.adapters.contract_reads import ContractPools

SEGMENT_MEMBERS_V1 = "contract_segment_members_v1"
_SELECT = (
    f"SELECT user_id FROM {SEGMENT_MEMBERS_V1}"
    " WHERE app_id = %s AND segment_id = %s ORDER BY user_id"
)


class PostgresSegmentMembers:
    def __init__(self, pools: AsyncConnectionPool | ContractPools) -> None:
        self._pools = pools if isinstance(pools, ContractPools) else ContractPools.single(pools)

    async def members(self, app_id: str, segment_id: str) -> list[str]:
        async def query(pool: AsyncConnectionPool) -> list[str]:
            async with pool.connection() as conn:
                cursor = await conn.execute(_SELECT, (app_id, segment_id))
                return [row[0] for row in await cursor.fetchall()]

        parts = await self._pools.each(query)
        return parts[0] if len(parts) == 1 else list(heapq.merge(*parts))
