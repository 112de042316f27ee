"""Profiles from the projector's read contract, the view `contract_profiles_v1` (see the
README, "Contracts between services"), never its tables: each in its user's partition's
database (contract_reads.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from psycopg_pool import AsyncConnectionPool

from services.campaign.adapters.contract_reads import ContractPools
from services.campaign.domain.eligibility import Profile
from services.eventlog.keyring import ERASURES_TABLE

PROFILES_V1 = "contract_profiles_v1"

# One primary-key lookup per user, whatever the planner knows of the table (OFFSET 0
# keeps the LATERAL subquery from being pulled up into a join; see deliveries.py).
_PROFILES = f"""
SELECT p.app_id, p.user_id, p.traits, p.email, p.phone, p.push_token, p.consents, p.timezone,
       p.country, p.city, p.lifecycle_state, p.rfm_group, {{erased}}
FROM unnest(%s::text[], %s::text[]) AS k(app_id, user_id)
CROSS JOIN LATERAL (
    SELECT * FROM {PROFILES_V1} t WHERE t.app_id = k.app_id AND t.user_id = k.user_id
    OFFSET 0
) p
"""
_ERASED = (
    f"EXISTS (SELECT 1 FROM {ERASURES_TABLE} e WHERE e.app_id = k.app_id AND e.user_id = k.user_id)"
)
# With the profiles in the home database: one query; in others, the erasures (home's) apart.
_SELECT = _PROFILES.format(erased=_ERASED)
_SELECT_ELSEWHERE = _PROFILES.format(erased="false")
_ERASED_OF = (
    f"SELECT DISTINCT e.app_id, e.user_id FROM {ERASURES_TABLE} e"
    " JOIN unnest(%s::text[], %s::text[]) AS k(app_id, user_id) USING (app_id, user_id)"
)


async def _rows(
    pool: AsyncConnectionPool, query: str, keys: Sequence[tuple[str, str]]
) -> list[Any]:
    async with pool.connection() as conn:
        cursor = await conn.execute(query, ([k[0] for k in keys], [k[1] for k in keys]))
        return list(await cursor.fetchall())


class PostgresProfileReader:
    def __init__(self, pools: AsyncConnectionPool | ContractPools) -> None:
        self._pools = pools if isinstance(pools, ContractPools) else ContractPools.single(pools)

    async def profiles(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Profile]:
        if not keys:
            return {}
        if not self._pools.several:
            rows = await _rows(self._pools.home, _SELECT, keys)
        else:
            erased, *parts = await asyncio.gather(
                _rows(self._pools.home, _ERASED_OF, keys),
                *(_rows(pool, _SELECT_ELSEWHERE, mine) for pool, mine in self._pools.grouped(keys)),
            )
            gone = {(row[0], row[1]) for row in erased}
            rows = [(*row[:12], (row[0], row[1]) in gone) for part in parts for row in part]
        return {
            (row[0], row[1]): Profile(
                user_id=row[1],
                traits=row[2] or {},
                email=row[3],
                phone=row[4],
                push_token=row[5],
                consents={str(k): bool(v) for k, v in (row[6] or {}).items()},
                timezone=row[7],
                country=row[8],
                city=row[9],
                lifecycle_state=row[10],
                rfm_group=row[11],
                erased=row[12],
            )
            for row in rows
        }
