"""Reads across the databases of a partitioned deployment: one query per database, merged.

Partitions can live in several PostgreSQL databases (COHORTFLOW_PLACEMENT); each holds the
same read-model tables, its rows those of its partitions' users. A read of one user goes to
the database of that user's partition. A read that spans users runs its query on every
database at once (one pooled connection each, on a small thread pool) and merges: counts
add up, pages of users merge-sort by the key their cursor uses and are cut to the page,
samples likewise. With one database the query runs as it is, on the caller's thread.

App-wide rows (segment definitions and versions) are written by every partition's fold
in its database; they are read from the database of partition 0, whose log holds them.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from services.eventlog.partitions import Deployment, user_key
from services.projector.adapters.store import ProjectorStore

T = TypeVar("T")
# Threads per database for the fan-out: reads of several calls at once share them.
_THREADS_PER_DATABASE = 4


class Fanout:
    """The read models of every database of a deployment, and where each user's are."""

    def __init__(
        self, stores: Mapping[str, ProjectorStore], deployment: Deployment | None = None
    ) -> None:
        """`stores`: database URL -> its store, for every database of `deployment`
        (None: a single database, the only store)."""
        if deployment is None:
            (url,) = stores
            deployment = Deployment.single(url)
        missing = [url for url in deployment.databases() if url not in stores]
        if missing:
            msg = f"no store for database {missing[0]}"
            raise ValueError(msg)
        self.deployment = deployment
        self._urls = deployment.databases()
        self.stores: list[ProjectorStore] = [stores[url] for url in self._urls]
        self._by_url = dict(stores)
        self._pool: ThreadPoolExecutor | None = None
        if len(self.stores) > 1:
            self._pool = ThreadPoolExecutor(
                len(self.stores) * _THREADS_PER_DATABASE, thread_name_prefix="fanout"
            )

    @classmethod
    def of(cls, source: ProjectorStore | Fanout) -> Fanout:
        """`source` itself, or a fan-out over that one store."""
        if isinstance(source, Fanout):
            return source
        return cls({"": source}, Deployment.single(""))

    @property
    def single(self) -> bool:
        return len(self.stores) == 1

    @property
    def definitions(self) -> ProjectorStore:
        """The store of partition 0's database, where app-wide rows are read."""
        return self._by_url[self.deployment.database_of(0)]

    def index(self, store: ProjectorStore) -> int:
        """The place of `store` in `stores` (and in the results of `each`)."""
        return next(i for i, each in enumerate(self.stores) if each is store)

    def of_user(self, app_id: str, user_id: str) -> ProjectorStore:
        """The store of the database that holds `user_id` (as profiles name users:
        `anonymous:<id>` for an anonymous user)."""
        partition = self.deployment.partition_of(app_id, user_key(user_id, ""))
        return self._by_url[self.deployment.database_of(partition)]

    def each(self, query: Callable[[ProjectorStore], T]) -> list[T]:
        """`query` run on every database at once; the results in database order."""
        return self.each_of(self.stores, query)

    def each_of(
        self, stores: Sequence[ProjectorStore], query: Callable[[ProjectorStore], T]
    ) -> list[T]:
        """`query` run on each of `stores` at once; the results in their order."""
        if self._pool is None or len(stores) == 1:
            return [query(store) for store in stores]
        futures = [self._pool.submit(query, store) for store in stores]
        return [future.result() for future in futures]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def summed(counts: Iterable[Mapping[Any, int]]) -> dict[Any, int]:
    """Counts per key, added up over the databases."""
    out: dict[Any, int] = {}
    for part in counts:
        for key, n in part.items():
            out[key] = out.get(key, 0) + n
    return out


def first_page(pages: Sequence[Iterable[T]], key: Callable[[T], Any], limit: int) -> list[T]:
    """The first `limit` of pages each sorted by `key` (and each cut at `limit` or more),
    merged in `key` order: the page one query over all the rows would give."""
    if len(pages) == 1:
        return list(itertools.islice(pages[0], limit))
    return list(itertools.islice(heapq.merge(*pages, key=key), limit))
