"""Readiness: which gRPC health names say SERVING, from the checks each one needs.

A `Check` is one thing a service needs to do its job (its database, NATS, the outbox
relay), judged by what happens: probes and real work report `passed()` or `failed()`.
It goes down only after `trip_after` failures in a row, so one slow or lost query does
not flap a probe, and comes back up at the first success. `Readiness` holds, for each
health name (the overall "" and each RPC service), the checks it needs: the name says
SERVING exactly while all of them are up (and the server is not stopping).
`cohortflow_health_check_up{check}` shows each check, for alerts.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping, Sequence

import structlog
from prometheus_client import Gauge

from services.common.grpc.server import Served

_log = structlog.get_logger("health")

CHECK_UP = Gauge(
    "cohortflow_health_check_up",
    "1 while a readiness check passes (database, nats, relay, projection, ...), else 0",
    ["check"],
    # Ingest's worker processes each judge their own database check: show the worst one.
    multiprocess_mode="livemin",
)


class Check:
    """One dependency's state: down after `trip_after` failures in a row, up at a success.

    Thread-safe: the projector's threads report on it as well as the event loop.
    """

    def __init__(self, name: str, trip_after: int = 3, *, up: bool = True) -> None:
        """`up=False`: down until a first success (nothing is known yet)."""
        if trip_after < 1:
            raise ValueError("trip_after must be at least 1")
        self.name = name
        self.trip_after = trip_after
        self.up = up
        self.failures = 0
        self.last_error = ""
        self._listeners: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        CHECK_UP.labels(name).set(1 if up else 0)

    def listen(self, listener: Callable[[], None]) -> None:
        """Call `listener` (on the reporting thread) whenever `up` changes."""
        self._listeners.append(listener)

    def passed(self) -> None:
        with self._lock:
            self.failures = 0
            changed = not self.up
            self.up = True
        if changed:
            _log.info("check passes again", check=self.name)
            self._changed()

    def failed(self, error: object) -> None:
        with self._lock:
            self.failures += 1
            self.last_error = str(error) or type(error).__name__
            changed = self.up and self.failures >= self.trip_after
            if changed:
                self.up = False
        if changed:
            _log.warning(
                "check fails", check=self.name, failures=self.failures, error=self.last_error
            )
            self._changed()

    def _changed(self) -> None:
        CHECK_UP.labels(self.name).set(1 if self.up else 0)
        for listener in self._listeners:
            listener()


class Readiness:
    """Keeps each health name of `served` SERVING exactly while the checks it needs are up.

    Create it on the server's event loop; checks may change on any thread.
    """

    def __init__(self, served: Served, needs: Mapping[str, Sequence[Check]]) -> None:
        self._served = served
        self._needs = {name: tuple(checks) for name, checks in needs.items()}
        self._loop = asyncio.get_running_loop()
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        for check in {c for checks in self._needs.values() for c in checks}:
            check.listen(self._changed)

    async def sync(self) -> None:
        """Bring every name's status in line with its checks now."""
        async with self._lock:
            for name, checks in self._needs.items():
                await self._served.set_serving(all(c.up for c in checks), [name])

    def _changed(self) -> None:
        self._loop.call_soon_threadsafe(self._schedule)

    def _schedule(self) -> None:
        task = self._loop.create_task(self.sync())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
