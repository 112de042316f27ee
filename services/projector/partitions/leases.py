"""Leases on partitions: PostgreSQL advisory locks held on one connection per worker.

A worker announces itself with a presence lock and a row naming it; it holds a
partition by holding that partition's lock. All of them live on one connection, so
when the worker dies (SIGKILL, a lost host) its connection closes and PostgreSQL
releases every lock at once: the other workers see it gone from `pg_locks` on their
next look (every second) and take its partitions. If the lease connection itself
breaks, the worker has lost every partition and must stop folding them at once
(`LeaseLost`); its commits are fenced anyway (see the store's tracking check).
"""

from __future__ import annotations

import zlib

import psycopg
import structlog

from services.projector.partitions import metrics

_log = structlog.get_logger("projector.leases")

WORKERS_TABLE = "projector_workers"
# Advisory lock namespaces (the two-integer form): presence of a worker, lease of a partition.
PRESENCE_LOCKS = 0x63660001
PARTITION_LOCKS = 0x63660002

CREATE_STATEMENT = f"""
CREATE TABLE IF NOT EXISTS {WORKERS_TABLE} (
    worker_id text PRIMARY KEY,
    presence_key integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now()
)
"""


# The server's keepalive on the lease connection: a worker whose host vanished (no FIN, no
# RST) is found dead after idle + interval * count seconds, about 25 s, and its locks go;
# PostgreSQL's default leaves that to the kernel (two hours on Linux). Ignored over a
# Unix socket.
KEEPALIVE = {"tcp_keepalives_idle": 10, "tcp_keepalives_interval": 5, "tcp_keepalives_count": 3}


class LeaseLost(Exception):
    """The lease connection broke: every partition of this worker is gone."""


def presence_key(worker_id: str) -> int:
    return zlib.crc32(worker_id.encode()) & 0x7FFFFFFF


class Leases:
    def __init__(self, home_url: str, worker_id: str) -> None:
        self.worker_id = worker_id
        self._url = home_url
        self._key = presence_key(worker_id)
        self._conn: psycopg.Connection | None = None
        self.held: set[int] = set()

    def join(self) -> None:
        """Connect, announce this worker and hold its presence lock."""
        conn = psycopg.connect(self._url, autocommit=True, connect_timeout=10)
        for setting, value in KEEPALIVE.items():
            conn.execute(f"SET {setting} = {int(value)}")
        conn.execute("SELECT pg_advisory_lock(%s, %s)", (PRESENCE_LOCKS, self._key))
        conn.execute(
            f"INSERT INTO {WORKERS_TABLE} (worker_id, presence_key) VALUES (%s, %s)"
            " ON CONFLICT (worker_id) DO UPDATE SET presence_key = EXCLUDED.presence_key,"
            " started_at = now()",
            (self.worker_id, self._key),
        )
        self._conn = conn
        self.held = set()

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            raise LeaseLost("not joined")
        return self._conn

    def live_workers(self) -> list[str]:
        """Workers whose presence lock is held right now (this one included)."""
        try:
            rows = (
                self._connection()
                .execute(
                    f"SELECT w.worker_id FROM {WORKERS_TABLE} w JOIN pg_locks l"
                    " ON l.locktype = 'advisory' AND l.granted AND l.classid = %s"
                    " AND l.objid = w.presence_key AND l.objsubid = 2"
                    " AND l.database = (SELECT oid FROM pg_database"
                    " WHERE datname = current_database())",
                    (PRESENCE_LOCKS,),
                )
                .fetchall()
            )
        except psycopg.Error as error:
            self._lost(error)
        return sorted({str(r[0]) for r in rows} | {self.worker_id})

    def taken(self) -> set[int]:
        """The partitions whose lease some worker (this one included) holds right now."""
        try:
            rows = (
                self._connection()
                .execute(
                    "SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                    " AND classid = %s AND objsubid = 2 AND database = (SELECT oid"
                    " FROM pg_database WHERE datname = current_database())",
                    (PARTITION_LOCKS,),
                )
                .fetchall()
            )
        except psycopg.Error as error:
            self._lost(error)
        return {int(r[0]) for r in rows}

    def try_take(self, partition: int) -> bool:
        try:
            row = (
                self._connection()
                .execute("SELECT pg_try_advisory_lock(%s, %s)", (PARTITION_LOCKS, partition))
                .fetchone()
            )
        except psycopg.Error as error:
            self._lost(error)
        if row and row[0]:
            self.held.add(partition)
            metrics.LEASE_CHANGES.labels("acquired").inc()
            metrics.PARTITION_HELD.labels(str(partition)).set(1)
            _log.info("partition acquired", partition=partition, worker=self.worker_id)
            return True
        return False

    def release(self, partition: int) -> None:
        if partition not in self.held:
            return
        self.held.discard(partition)
        metrics.LEASE_CHANGES.labels("released").inc()
        metrics.PARTITION_HELD.labels(str(partition)).set(0)
        _log.info("partition released", partition=partition, worker=self.worker_id)
        try:
            self._connection().execute(
                "SELECT pg_advisory_unlock(%s, %s)", (PARTITION_LOCKS, partition)
            )
        except psycopg.Error as error:
            self._lost(error)

    def leave(self) -> None:
        """Let every partition go and leave (the other workers take over at once)."""
        conn, self._conn = self._conn, None
        for partition in sorted(self.held):
            metrics.PARTITION_HELD.labels(str(partition)).set(0)
        self.held = set()
        if conn is None or conn.closed:
            return
        try:
            conn.execute(f"DELETE FROM {WORKERS_TABLE} WHERE worker_id = %s", (self.worker_id,))
            # At once, not when the server notices the closed connection.
            conn.execute("SELECT pg_advisory_unlock_all()")
        except psycopg.Error as error:
            _log.warning("leaving without a goodbye", error=repr(error))
        finally:
            conn.close()

    def _lost(self, error: BaseException) -> None:
        held, self.held = sorted(self.held), set()
        for partition in held:
            metrics.LEASE_CHANGES.labels("lost").inc()
            metrics.PARTITION_HELD.labels(str(partition)).set(0)
        _log.error(
            "lease connection lost", worker=self.worker_id, partitions=held, error=repr(error)
        )
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        raise LeaseLost(repr(error)) from error
