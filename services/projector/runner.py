"""The projection loop: follow the log, fold batches, commit each with its position.

Runs in a thread (the event store API is synchronous). Any failure discards the
in-memory state and resumes from the last commit, so a failed batch is simply
done again: the commit of state and position is atomic.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog
from eventsourcing.persistence import Tracking
from eventsourcing.utils import get_topic

from services.eventlog.segments import Segment
from services.eventlog.store import LOG_NAME, EventLog
from services.projector import metrics
from services.projector.adapters.builds import StoredBuilds
from services.projector.adapters.follower import LogFollower
from services.projector.adapters.store import PreparedBatch, ProjectorStore
from services.projector.domain.engine import Engine, PolicySource

_log = structlog.get_logger("projector")
_BUILT_TOPIC = get_topic(Segment.Built)


class _Committer:
    """Commits prepared batches in order on its own thread, so the next batch is folded
    while the previous one is written. At most one batch waits; after a failure it
    refuses the rest until the fold reloads from the last commit."""

    def __init__(self, store: ProjectorStore, on_commit: Callable[[int], None]) -> None:
        self._store = store
        self._on_commit = on_commit
        self._queue: queue.Queue[tuple[PreparedBatch, int, int, float] | None] = queue.Queue(1)
        self.failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="projection-commit", daemon=True)
        self._thread.start()

    def submit(self, batch: PreparedBatch, position: int, events: int, started: float) -> None:
        if self.failed is not None:
            raise self.failed
        self._queue.put((batch, position, events, started))

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
                    self._commit(*item)
            finally:
                self._queue.task_done()

    def _commit(self, batch: PreparedBatch, position: int, events: int, started: float) -> None:
        try:
            self._store.commit(batch, Tracking(LOG_NAME, position))
        except BaseException as error:
            self.failed = error
            return
        self._on_commit(position)
        metrics.EVENTS.inc(events)
        metrics.BATCH_SIZE.observe(events)
        metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
        metrics.POSITION.set(position)

    def close(self) -> None:
        """Wait for queued commits; raise if one failed."""
        self._queue.put(None)
        self._thread.join()
        if self.failed is not None:
            raise self.failed


class Projection:
    def __init__(
        self,
        log: EventLog,
        store: ProjectorStore,
        follower: LogFollower,
        policies: PolicySource,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._log = log
        self._store = store
        self._follower = follower
        self._policies = policies
        self._on_commit = on_commit
        self.position = 0
        self.ready = threading.Event()

    def run(self, stop: threading.Event, lock: tuple[str, int] | None = None) -> None:
        """Project until `stop`. With `lock` (database URL, advisory lock key), first become
        the only projector of that database: others wait as standbys."""
        holder = self._take_lock(lock, stop) if lock else None
        try:
            self._run(stop)
        finally:
            if holder is not None:
                holder.close()

    @staticmethod
    def _take_lock(lock: tuple[str, int], stop: threading.Event) -> Any:
        import psycopg

        url, key = lock
        conn = psycopg.connect(url, autocommit=True)
        waited = False
        while not stop.is_set():
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            if row and row[0]:
                return conn
            if not waited:
                _log.warning("another projector is running here; waiting as a standby")
                waited = True
            stop.wait(1.0)
        return conn

    def _run(self, stop: threading.Event) -> None:
        backoff = 0.5
        while not stop.is_set():
            try:
                self._follow(stop)
            except Exception as error:
                metrics.BATCH_FAILURES.inc()
                _log.error("projection failed; resuming from the last commit", error=repr(error))
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _committed(self, position: int) -> None:
        self.position = position
        self._on_commit()

    def _follow(self, stop: threading.Event) -> None:
        engine = Engine(self._policies, builds=StoredBuilds(self._store), facts=True)
        started = time.perf_counter()
        self.position = self._store.load(engine)
        metrics.POSITION.set(self.position)
        _log.info(
            "resumed",
            position=self.position,
            users=len(engine.users),
            seconds=round(time.perf_counter() - started, 3),
        )
        self.ready.set()
        mapper = self._log.mapper
        committer = _Committer(self._store, self._committed)
        try:
            for batch in self._follow_batches(stop):
                started = time.perf_counter()
                last = 0
                for notification in batch:
                    if notification.topic == _BUILT_TOPIC:
                        # Merging a build reads what was committed up to its definition:
                        # commit everything folded so far first.
                        if last:
                            self._submit(engine, committer, last, started)
                        committer.flush()
                    engine.apply(mapper.to_domain_event(notification), notification.id)
                    last = notification.id
                self._submit(engine, committer, last, started)
        finally:
            committer.close()

    def _follow_batches(self, stop: threading.Event) -> Any:
        return self._follower.batches(self.position, stop)

    def _submit(self, engine: Engine, committer: _Committer, position: int, started: float) -> None:
        drained = engine.drain()
        for change in drained.changes:
            metrics.CHANGES.labels(change.kind).inc()
        committer.submit(self._store.prepare(drained), position, len(drained.facts), started)


def monitor(
    log: EventLog, store: ProjectorStore, projection: Projection, stop: threading.Event
) -> None:
    """Keep the lag and outbox gauges fresh."""
    while not stop.wait(1.0):
        try:
            head = log.head_position()
            metrics.HEAD.set(head)
            metrics.LAG.set(max(0, head - projection.position))
            metrics.OUTBOX.set(store.outbox_depth())
        except Exception as error:
            _log.debug("monitor failed", error=repr(error))
