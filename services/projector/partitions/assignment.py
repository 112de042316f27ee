"""Which partitions a worker should fold: the same answer in every worker.

Live workers are sorted by id and partition p goes to worker p mod n, so each worker
folds P/n partitions (give or take one) and every worker computes the same split from
the same set of live workers. When a worker comes or goes, partitions move; a worker
takes one only once its previous holder has let it go (the lease is a lock).
"""

from __future__ import annotations

from collections.abc import Iterable


def assigned(partitions: int, live_workers: Iterable[str], me: str) -> frozenset[int]:
    """The partitions `me` should hold while `live_workers` (including `me`) are live."""
    workers = sorted(set(live_workers) | {me})
    index, count = workers.index(me), len(workers)
    return frozenset(p for p in range(partitions) if p % count == index)
