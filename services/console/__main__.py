"""python -m services.console: read settings -> bootstrap -> serve HTTP on CONSOLE_LISTEN."""

from __future__ import annotations

import asyncio
import sys

import uvicorn
from prometheus_client import start_http_server

from services.common.logging import configure_logging
from services.console.bootstrap import build_console
from services.console.config import ConsoleSettings


async def serve(settings: ConsoleSettings) -> None:
    console = build_console(settings)
    console.health.start()
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.metrics_host)
    host, port = settings.host_port()
    server = uvicorn.Server(
        uvicorn.Config(
            console.app,
            host=host,
            port=port,
            log_level=settings.log_level.lower(),
            access_log=False,
            timeout_graceful_shutdown=int(settings.shutdown_grace_s) or None,
            lifespan="off",
        )
    )
    try:
        await server.serve()  # handles SIGINT/SIGTERM: stops accepting, finishes requests
    finally:
        await console.close()


def main() -> int:
    settings = ConsoleSettings()
    configure_logging(settings.log_level, settings.log_format)
    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
