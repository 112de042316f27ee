"""The projector lock: one process of a database projects, the others wait as standbys.

A PostgreSQL session advisory lock, held on a connection of its own. The server drops it
with that connection (a restart, `pg_terminate_backend`, a network cut), and a standby
may then take it; so the holder checks it still holds the lock whenever it resumes
after a failure, and waits for it again if it does not. Metrics say which process
holds it (`cohortflow_projector_lock_held`) and how often it changed hands
(`cohortflow_projector_lock_acquisitions_total`).
"""

from __future__ import annotations

import threading

import psycopg
import structlog

from services.projector import metrics

_log = structlog.get_logger("projector.lock")


class LockLost(Exception):
    """The lock went with its connection: stop projecting until it is held again."""


class ProjectorLock:
    def __init__(self, database_url: str, key: int, *, retry_s: float = 1.0) -> None:
        self._url = database_url
        self._key = key
        self._retry_s = retry_s
        self._conn: psycopg.Connection | None = None
        self._guard = threading.Lock()  # the monitor thread checks while projection runs

    @property
    def held(self) -> bool:
        return self._conn is not None

    def ensure_held(self) -> None:
        """Raise LockLost if the lock was found lost (by `still_held`, on any thread)."""
        if self._conn is None:
            raise LockLost

    def acquire(self, stop: threading.Event) -> bool:
        """Hold the lock (waiting as a standby while another process does), or give up
        when `stop` is set; True if held. Connection failures are waited out."""
        if self.still_held():
            return True
        waited = False
        while not stop.is_set():
            try:
                conn = psycopg.connect(
                    self._url,
                    autocommit=True,
                    connect_timeout=5,
                    application_name="projector",
                    # A server that vanished (a network cut, not a refusal) must not hang
                    # the lock's checks: keepalives and a send timeout end it within ~20 s.
                    keepalives=1,
                    keepalives_idle=5,
                    keepalives_interval=5,
                    keepalives_count=3,
                    tcp_user_timeout=20_000,
                )
                row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
            except psycopg.Error as error:
                _log.warning("cannot ask for the projector lock yet", error=repr(error))
                stop.wait(self._retry_s)
                continue
            if row and row[0]:
                with self._guard:
                    self._conn = conn
                metrics.LOCK_HELD.set(1)
                metrics.LOCK_ACQUISITIONS.inc()
                _log.info("holding the projector lock", standby_before=waited)
                return True
            conn.close()
            if not waited:
                _log.warning("another projector is running here; waiting as a standby")
                waited = True
            stop.wait(self._retry_s)
        return False

    def still_held(self) -> bool:
        """Whether the lock's connection is alive (so the lock is still ours); forgets a
        lost one. Called by the projection before resuming and by the monitor."""
        with self._guard:
            if self._conn is None:
                return False
            try:
                self._conn.execute("SELECT 1")
                return True
            except psycopg.Error as error:
                _log.error("lost the projector lock with its connection", error=repr(error))
                self._forget()
                return False

    def release(self) -> None:
        with self._guard:
            self._forget()

    def _forget(self) -> None:
        conn, self._conn = self._conn, None
        metrics.LOCK_HELD.set(0)
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error as error:
                _log.debug("closing the lock connection failed", error=repr(error))
