"""Follow the event log in batches: LISTEN/NOTIFY for promptness, polling as a watchdog.

A lost NOTIFY (or a connection that silently dropped) would stall a pure
LISTEN loop until the next write. Here every wait is bounded: when it ends
without a notification, the log head is polled anyway, and a batch found
that way is counted as a recovery.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence

import psycopg
import structlog
from eventsourcing.persistence import Notification
from psycopg import sql

from services.eventlog.partitioned import PartitionLog
from services.eventlog.store import EventLog
from services.projector import metrics

_log = structlog.get_logger("projector.follower")


class LogFollower:
    def __init__(
        self,
        log: EventLog | PartitionLog,
        database_url: str,
        *,
        batch_size: int = 2000,
        wait_s: float = 1.0,
    ) -> None:
        self._log = log
        self._database_url = database_url
        self._batch_size = batch_size
        self._wait_s = wait_s
        self._channel = log.log_recorder.channel_name

    @property
    def batch_size(self) -> int:
        """Most notifications in one batch."""
        return self._batch_size

    def _listen(self) -> psycopg.Connection:
        conn = psycopg.connect(self._database_url, autocommit=True)
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        return conn

    def batches(
        self,
        after: int,
        stop: threading.Event,
        idle: Callable[[], None] = lambda: None,
    ) -> Iterator[Sequence[Notification]]:
        """Batches of notifications with ids > `after`, in order, until `stop` is set.
        `idle()` runs before each wait for more: an exception it raises ends the batches
        (the projection checks there that its last commit went through)."""
        position = after
        listener: psycopg.Connection | None = None
        notified: bool = True
        try:
            while not stop.is_set():
                if listener is None:
                    try:
                        listener = self._listen()
                    except psycopg.OperationalError as error:
                        _log.warning("listen failed; polling", error=str(error))
                batch = self._log.recorder.select_notifications(
                    start=position, limit=self._batch_size, inclusive_of_start=False
                )
                if batch:
                    if not notified:
                        metrics.WATCHDOG_RECOVERIES.inc()
                    position = batch[-1].id
                    yield batch
                    notified = len(batch) == self._batch_size or notified
                    continue
                idle()
                outcome = self._wait(listener)
                if outcome is None:
                    listener = None
                notified = bool(outcome)
        finally:
            if listener is not None:
                listener.close()

    def _wait(self, listener: psycopg.Connection | None) -> bool | None:
        """True if notified, False on timeout, None if the listening connection broke."""
        if listener is None:
            threading.Event().wait(self._wait_s)
            return False
        try:
            for _ in listener.notifies(timeout=self._wait_s, stop_after=1):
                return True
        except psycopg.OperationalError as error:
            _log.warning("listening connection lost", error=str(error))
            return None
        return False
