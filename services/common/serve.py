"""The tail of every service's `__main__`: expose metrics, serve until SIGTERM or SIGINT, then
stop gracefully (health NOT_SERVING, drain, refuse new calls, grace for in-flight ones)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import structlog
from prometheus_client import start_http_server


class Served(Protocol):
    """A started service: the port it listens on, and how it stops."""

    @property
    def port(self) -> int: ...

    async def stop(self, grace: float, drain: float = 0.0) -> None: ...


class ServeSettings(Protocol):
    """The settings every service has (services.common.config.ServiceSettings and its own
    listen and metrics knobs)."""

    @property
    def listen(self) -> str: ...

    @property
    def metrics_port(self) -> int: ...

    @property
    def metrics_host(self) -> str: ...

    @property
    def shutdown_drain_s(self) -> float: ...

    @property
    def shutdown_grace_s(self) -> float: ...


async def serve_until_signal(
    service: str,
    app: Served,
    settings: ServeSettings,
    *,
    serving: Mapping[str, Any] | None = None,
    stopped: Callable[[], Mapping[str, Any]] | None = None,
) -> None:
    """Serve the started `app` until the process is told to stop, then stop it.

    `serving` adds fields to the "serving" log line; `stopped` computes fields for the
    "stopped" line once the app has stopped (e.g. the projector's final position).
    """
    log = structlog.get_logger(service)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.metrics_host)
    log.info(
        "serving",
        listen=settings.listen,
        port=app.port,
        metrics_port=settings.metrics_port,
        **(serving or {}),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping", drain_s=settings.shutdown_drain_s, grace_s=settings.shutdown_grace_s)
    await app.stop(settings.shutdown_grace_s, settings.shutdown_drain_s)
    log.info("stopped", **(stopped() if stopped else {}))
