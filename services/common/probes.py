"""Periodic probes that feed readiness checks: PostgreSQL, or anything awaitable.

`watch` runs a probe every `interval_s` with a deadline of `timeout_s` and reports each
outcome on a `Check` (which trips only after several failures in a row). The database
probe asks on a connection of its own, so a pool busy with real work cannot delay the
answer, and it asks whether the server takes writes: a primary that failed over to a
read-only replica fails it as well as one that refuses connections.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import psycopg

from services.common.readiness import Check


class ReadOnlyDatabase(Exception):
    """The server answers but is a replica in recovery: it cannot commit."""


class DatabaseProbe:
    """`await probe()` returns if PostgreSQL at `url` takes writes, else raises."""

    def __init__(self, url: str, connect_timeout_s: float = 5.0) -> None:
        self._url = url
        self._connect_timeout_s = max(1, int(connect_timeout_s))
        self._conn: psycopg.AsyncConnection | None = None

    async def __call__(self) -> None:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = await psycopg.AsyncConnection.connect(
                    self._url,
                    autocommit=True,
                    connect_timeout=self._connect_timeout_s,
                    application_name="cohortflow-health",
                )
            cursor = await self._conn.execute("SELECT pg_is_in_recovery()")
            row = await cursor.fetchone()
        except BaseException:
            # Lost, refused or cut off by the deadline: start afresh next time.
            await self.close()
            raise
        if row and row[0]:
            raise ReadOnlyDatabase("the database is a replica in recovery (read-only)")

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


async def watch(
    check: Check,
    probe: Callable[[], Awaitable[object]],
    stop: asyncio.Event,
    *,
    interval_s: float,
    timeout_s: float,
) -> None:
    """Until `stop`: run `probe` every `interval_s`, each within `timeout_s`, and report."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(probe(), timeout_s)
        except Exception as error:  # a probe fails in any way: the check counts it
            check.failed(error if str(error) else f"{type(error).__name__} (probe)")
        else:
            check.passed()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
