"""What the console's /healthz says: whether it can serve its pages now.

Its pages need three things: its own database (sign-in, sessions), the projector's reads
and the campaign API. Each is probed every HEALTH_INTERVAL_S in the background (a
`SELECT` on a connection of its own; gRPC health of the two services) and counts as
down after HEALTH_FAILURES failures in a row, up again at the first success; at start it
is down until its first success. /healthz only reads the result, so a probe request
never waits for a slow backend. /livez says the process answers HTTP, nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from services.common.probes import DatabaseProbe, watch
from services.common.readiness import Check
from services.console.backends import Backends


class ConsoleHealth:
    def __init__(
        self,
        database_url: str,
        backends: Backends,
        *,
        interval_s: float,
        timeout_s: float,
        failures: int,
    ) -> None:
        # Not ready until each has answered once: a new pod takes no traffic on trust.
        self.checks = [
            Check(name, failures, up=False) for name in ("database", "projector", "campaign")
        ]
        self._probe = DatabaseProbe(database_url, timeout_s)
        self._backends = backends
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start probing (on the running event loop)."""
        database, projector, campaign = self.checks
        probes = (
            (database, self._probe),
            (projector, lambda: self._backends.check_serving("projector", self._timeout_s)),
            (campaign, lambda: self._backends.check_serving("campaign", self._timeout_s)),
        )
        for check, probe in probes:
            task = watch(
                check, probe, self._stop, interval_s=self._interval_s, timeout_s=self._timeout_s
            )
            self._tasks.append(asyncio.get_running_loop().create_task(task))

    def report(self) -> tuple[bool, dict[str, str]]:
        """(ready, each check: "ok" or "failing"). Why it fails is in the log, not here:
        /healthz answers anyone, and errors name internal hosts."""
        found = {c.name: "ok" if c.up else "failing" for c in self.checks}
        return all(c.up for c in self.checks), found

    async def close(self) -> None:
        self._stop.set()
        for task in self._tasks:
            with contextlib.suppress(Exception):
                await task
        await self._probe.close()


async def healthz(request: Request) -> Response:
    """200 while the console can serve its pages, else 503; the JSON names each check."""
    ready, checks = request.app.state.health.report()
    body = {"status": "ok" if ready else "unavailable", "checks": checks}
    return JSONResponse(body, status_code=200 if ready else 503)


async def livez(request: Request) -> Response:
    return PlainTextResponse("ok")
