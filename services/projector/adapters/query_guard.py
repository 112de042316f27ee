"""Bounds on the history queries (previews, builds, time travel) in the shared PostgreSQL.

A segment definition can ask for an expensive query over an app's whole history. Three
things keep one such query from holding the database:

- `statement_timeout`, per transaction (SET LOCAL): PostgreSQL cancels a statement that
  runs longer (previews and time travel: PROJECTOR_QUERY_TIMEOUT_S, or less if the gRPC
  deadline is nearer; builds: PROJECTOR_BUILD_STATEMENT_TIMEOUT_S per statement);
- `client_connection_check_interval`: while a statement runs, PostgreSQL checks every
  second that its client is still connected. Without it a backend notices a killed
  projector only when it sends its result, so a ten-minute build ran to its end;
- `idle_in_transaction_session_timeout`: a transaction left open by a stalled caller ends.

A caller that goes away (a cancelled or expired gRPC call) cancels its query through a
`QueryHandle`, from any thread; `guarded` turns what PostgreSQL answers into
`QueryTimeout`, `QueryCancelled` or `QueryTooExpensive`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import errors

# Defaults of PROJECTOR_QUERY_TIMEOUT_S and PROJECTOR_BUILD_STATEMENT_TIMEOUT_S.
QUERY_TIMEOUT_S = 30.0
BUILD_STATEMENT_TIMEOUT_S = 300.0
CONNECTION_CHECK_MS = 1000
IDLE_IN_TRANSACTION_MS = 60_000
_CANCEL_TRIES = 20
_CANCEL_SPACING_S = 0.25


class QueryTimeout(Exception):
    """The statement ran longer than its timeout."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        super().__init__(f"stopped after {timeout_s:g} s")


class QueryCancelled(Exception):
    """The caller cancelled the query (its call went away)."""


class QueryTooExpensive(Exception):
    """PostgreSQL refused the query as beyond its resources (memory, disk, complexity)."""


class QueryHandle:
    """The connections worker threads are running a query on (one per database a read fans
    out to), so another thread can cancel it.

    `cancel` may come at any moment: before the query starts (then it never starts), while
    it runs (PostgreSQL is asked to cancel it, again until the worker has seen it), or after.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connections: set[psycopg.Connection[Any]] = set()
        self.cancelled = False

    @contextlib.contextmanager
    def running(self, connection: psycopg.Connection[Any]) -> Iterator[None]:
        with self._lock:
            if self.cancelled:
                raise QueryCancelled
            self._connections.add(connection)
        try:
            yield
        finally:
            with self._lock:
                self._connections.discard(connection)

    def cancel(self) -> None:
        """Cancel the query (blocks while asking PostgreSQL; run it off the event loop)."""
        with self._lock:
            self.cancelled = True
        for _ in range(_CANCEL_TRIES):
            with self._lock:
                connections = list(self._connections)
            if not connections:
                return
            for connection in connections:
                with contextlib.suppress(psycopg.Error):
                    connection.cancel_safe(timeout=5)
            # A cancel that arrives between two statements cancels nothing: ask again
            # until the workers have come out of `running`.
            time.sleep(_CANCEL_SPACING_S)


def apply_limits(cursor: Any, timeout_s: float | None) -> None:
    """Set the limits above for the current transaction (None: no statement timeout)."""
    timeout_ms = max(int(timeout_s * 1000), 1) if timeout_s is not None else 0
    cursor.execute(
        "SELECT set_config('statement_timeout', %s, true),"
        " set_config('client_connection_check_interval', %s, true),"
        " set_config('idle_in_transaction_session_timeout', %s, true)",
        (str(timeout_ms), str(CONNECTION_CHECK_MS), str(IDLE_IN_TRANSACTION_MS)),
    )


@contextlib.contextmanager
def guarded(
    cursor: Any, timeout_s: float | None, handle: QueryHandle | None = None
) -> Iterator[None]:
    """Run statements on `cursor` within the limits, cancellable through `handle`."""
    apply_limits(cursor, timeout_s)
    running = handle.running(cursor.connection) if handle is not None else contextlib.nullcontext()
    try:
        with running:
            yield
    except errors.QueryCanceled:
        if handle is not None and handle.cancelled:
            raise QueryCancelled from None
        raise QueryTimeout(timeout_s or 0) from None
    except psycopg.Error as error:
        # Classes 53 (insufficient resources) and 54 (program limit exceeded): the query,
        # not the database being away. Anything else is raised as it is.
        if (error.sqlstate or "")[:2] in ("53", "54"):
            raise QueryTooExpensive(error.diag.message_primary or str(error)) from None
        raise
