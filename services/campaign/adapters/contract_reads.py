"""Where campaign reads the projector's read contract: every database that holds partitions.

The contract views (`contract_profiles_v1`, `contract_segment_members_v1`) exist in each
database of the deployment's placement, each with the rows of its partitions' users. A
profile is read in its user's partition's database; a segment's members in every
database at once, merged in user id order. With one database: its pool, one query.
(The projector's reads do the same, services/projector/adapters/fanout.py.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from psycopg_pool import AsyncConnectionPool

from services.eventlog.partitions import Deployment, user_key

T = TypeVar("T")


class ContractPools:
    """One connection pool per database of the deployment (the home's is the service's)."""

    def __init__(
        self,
        pools: dict[str, AsyncConnectionPool],
        deployment: Deployment,
        home: AsyncConnectionPool,
    ) -> None:
        """`pools`: database URL -> pool, for every database of `deployment`; `home`: the
        service's own (campaign's and the deployment's shared tables)."""
        self.deployment = deployment
        self.home = home
        self._pools = pools
        self._urls = [url for url in deployment.databases() if url in pools]
        missing = [url for url in deployment.databases() if url not in pools]
        if missing:
            msg = f"no connection pool for database {missing[0]}"
            raise ValueError(msg)

    @classmethod
    def single(cls, pool: AsyncConnectionPool) -> ContractPools:
        return cls({"": pool}, Deployment.single(""), pool)

    @property
    def several(self) -> bool:
        """Whether the read models are in more than the home database."""
        return len(self._urls) > 1 or self._pools[self._urls[0]] is not self.home

    def of_user(self, app_id: str, user_id: str) -> AsyncConnectionPool:
        partition = self.deployment.partition_of(app_id, user_key(user_id, ""))
        return self._pools[self.deployment.database_of(partition)]

    def grouped(
        self, keys: Iterable[tuple[str, str]]
    ) -> list[tuple[AsyncConnectionPool, list[tuple[str, str]]]]:
        """(pool, the (app, user) keys it holds) for each database holding some of `keys`."""
        groups: dict[int, tuple[AsyncConnectionPool, list[tuple[str, str]]]] = {}
        for key in keys:
            pool = self.of_user(*key)
            groups.setdefault(id(pool), (pool, []))[1].append(key)
        return list(groups.values())

    async def each(self, query: Callable[[AsyncConnectionPool], Awaitable[T]]) -> list[T]:
        """`query` on every database at once; the results in database order."""
        pools = [self._pools[url] for url in self._urls]
        if len(pools) == 1:
            return [await query(pools[0])]
        return list(await asyncio.gather(*(query(pool) for pool in pools)))

    def others(self, home: AsyncConnectionPool) -> list[AsyncConnectionPool]:
        """The pools besides `home` (those this module opened, for closing)."""
        return [pool for pool in self._pools.values() if pool is not home]
