"""Commit folded batches: one transaction each, in order, on a thread of their own."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from eventsourcing.persistence import Tracking
from psycopg import Cursor
from psycopg.rows import DictRow

from services.projector.adapters.projection.rows import PreparedBatch
from services.projector.adapters.quarantine import Quarantined, write_records
from services.projector.adapters.store import ProjectorStore, Relayed


class CommitFailed(Exception):
    """The commit of the batch through `position` failed with `error` (nothing of it is
    visible: the whole transaction rolled back)."""

    def __init__(self, position: int, error: BaseException) -> None:
        super().__init__(f"the commit through position {position} failed: {error!r}")
        self.position = position
        self.error = error


@dataclass(frozen=True)
class Prepared:
    """A batch ready to commit: its rows, the position it moves the tracking to, and the
    events skipped in it (recorded in the same transaction)."""

    batch: PreparedBatch
    position: int
    events: int
    started: float
    quarantined: list[Quarantined] = field(default_factory=list)
    # The notification id the batch follows: the commit checks the partition is still there.
    after: int | None = None
    # Partitioned: letters to other partitions, and what was relayed (see relaying.py).
    relayed: Relayed | None = None


def commit(store: ProjectorStore, item: Prepared) -> None:
    """Rows, quarantine records and position of `item` in one transaction, or CommitFailed."""
    records = item.quarantined

    def also(curs: Cursor[DictRow]) -> None:
        write_records(curs, records)

    try:
        store.commit(
            item.batch,
            Tracking(store.scope.log_name, item.position),
            also if records else None,
            after=item.after,
            relayed=item.relayed,
        )
    except Exception as error:
        raise CommitFailed(item.position, error) from error


class Committer:
    """Runs `commit_one` for each submitted batch in order on its own thread, so the next
    batch is folded while the previous one is written. At most one batch waits; after a
    failure it refuses the rest until the fold reloads from the last commit."""

    def __init__(self, commit_one: Callable[[Prepared], None]) -> None:
        self._commit_one = commit_one
        self._queue: queue.Queue[Prepared | None] = queue.Queue(1)
        self.failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="projection-commit", daemon=True)
        self._thread.start()

    def submit(self, item: Prepared) -> None:
        if self.failed is not None:
            raise self.failed
        self._queue.put(item)

    def check(self) -> None:
        """Raise if a commit failed (without waiting for the ones queued)."""
        if self.failed is not None:
            raise self.failed

    def flush(self) -> None:
        """Wait until everything submitted is committed (raise if a commit failed)."""
        self._queue.join()
        if self.failed is not None:
            raise self.failed

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self.failed is None:
                    self._commit_one(item)
            except BaseException as error:
                self.failed = error
            finally:
                self._queue.task_done()

    def close(self) -> None:
        """Wait for queued commits; raise if one failed."""
        self._queue.put(None)
        self._thread.join()
        if self.failed is not None:
            raise self.failed
