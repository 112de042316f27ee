"""The projection loop: follow the log, fold batches, commit each with its position.

Runs in a thread (the event store API is synchronous). Any failure discards the
in-memory state and resumes from the last commit, so a failed batch is simply
done again: the commit of state and position is atomic.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog
from eventsourcing.persistence import Tracking

from services.eventlog.store import LOG_NAME, EventLog
from services.projector import metrics
from services.projector.adapters.follower import LogFollower
from services.projector.adapters.store import ProjectorStore
from services.projector.domain.engine import Engine, PolicySource
from services.projector.domain.lifecycle import usual_gap_days

_log = structlog.get_logger("projector")


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

    def run(self, stop: threading.Event) -> None:
        backoff = 0.5
        while not stop.is_set():
            try:
                self._follow(stop)
            except Exception as error:
                metrics.BATCH_FAILURES.inc()
                _log.error("projection failed; resuming from the last commit", error=repr(error))
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _follow(self, stop: threading.Event) -> None:
        engine = Engine(self._policies)
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
        for batch in self._follower.batches(self.position, stop):
            started = time.perf_counter()
            for notification in batch:
                engine.apply(mapper.to_domain_event(notification), notification.id)
            drained = engine.drain()
            gaps = {
                u.key: usual_gap_days(u, self._policies(u.app_id).lifecycle) or 0.0
                for u in drained.users
            }
            last = batch[-1].id
            self._store.commit(drained, Tracking(LOG_NAME, last), gaps)
            self.position = last
            self._on_commit()
            metrics.EVENTS.inc(len(batch))
            metrics.BATCH_SIZE.observe(len(batch))
            metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
            metrics.POSITION.set(last)
            for change in drained.changes:
                metrics.CHANGES.labels(change.kind).inc()


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
