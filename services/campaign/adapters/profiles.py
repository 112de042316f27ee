"""Profiles from the projector's read contract, the view `contract_profiles_v1` (see the
README, "Contracts between services"), never its tables."""

from __future__ import annotations

from collections.abc import Sequence

from psycopg_pool import AsyncConnectionPool

from services.campaign.domain.eligibility import Profile
from services.eventlog.keyring import ERASURES_TABLE

PROFILES_V1 = "contract_profiles_v1"

# One primary-key lookup per user, whatever the planner knows of the table (OFFSET 0
# keeps the LATERAL subquery from being pulled up into a join; see deliveries.py).
_SELECT = f"""
SELECT p.app_id, p.user_id, p.traits, p.email, p.phone, p.push_token, p.consents, p.timezone,
       p.country, p.city, p.lifecycle_state, p.rfm_group,
       EXISTS (
           SELECT 1 FROM {ERASURES_TABLE} e WHERE e.app_id = k.app_id AND e.user_id = k.user_id
       )
FROM unnest(%s::text[], %s::text[]) AS k(app_id, user_id)
CROSS JOIN LATERAL (
    SELECT * FROM {PROFILES_V1} t WHERE t.app_id = k.app_id AND t.user_id = k.user_id
    OFFSET 0
) p
"""


class PostgresProfileReader:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def profiles(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Profile]:
        if not keys:
            return {}
        async with self._pool.connection() as conn:
            cursor = await conn.execute(_SELECT, ([k[0] for k in keys], [k[1] for k in keys]))
            rows = await cursor.fetchall()
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
