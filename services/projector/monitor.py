"""Gauges read from the database: log head, lag, outbox depth and age, the lock.

Lag is the log's head minus the position the read models have committed (the
tracking row), not this process's own position: so it is true from the first scrape
after a start (before the projection has loaded anything), and a standby reports the
same lag as the process that projects. `refresh` runs once before the process serves
and then every second on the monitor thread.
"""

from __future__ import annotations

import threading

import structlog

from services.eventlog.store import EventLog
from services.projector import metrics
from services.projector.adapters.outbox import OutboxQueries
from services.projector.adapters.store import ProjectorStore
from services.projector.lock import ProjectorLock

_log = structlog.get_logger("projector.monitor")


def refresh(log: EventLog, store: ProjectorStore) -> None:
    """Read head, committed position and outbox from the database into the gauges."""
    head = log.head_position()
    committed = store.position()
    metrics.HEAD.set(head)
    metrics.LAG.set(max(0, head - committed))
    outbox = OutboxQueries(store)
    metrics.OUTBOX.set(outbox.depth())
    metrics.OUTBOX_OLDEST.set(outbox.oldest_seconds())


def monitor(
    log: EventLog,
    store: ProjectorStore,
    lock: ProjectorLock | None,
    stop: threading.Event,
    interval_s: float = 1.0,
) -> None:
    """Keep the gauges fresh until `stop`; notice a projector lock lost with its connection."""
    while not stop.wait(interval_s):
        try:
            refresh(log, store)
        except Exception as error:  # the database is away: the gauges keep their values
            _log.debug("monitor failed", error=repr(error))
        if lock is not None and lock.held:
            lock.still_held()
