"""python -m services.projector: read settings, bootstrap, serve until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import structlog
from prometheus_client import start_http_server

from services.common.config import ApiKeySettings
from services.common.grpc.auth import ApiKeys
from services.common.logging import configure_logging
from services.projector.bootstrap import start_projector
from services.projector.config import Policies, ProjectorSettings


async def serve(settings: ProjectorSettings, keys: ApiKeys, policies: Policies) -> None:
    log = structlog.get_logger("projector")
    app = await start_projector(settings, keys, policies=policies)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.metrics_host)
    log.info("serving", listen=settings.listen, port=app.port, metrics_port=settings.metrics_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping", drain_s=settings.shutdown_drain_s, grace_s=settings.shutdown_grace_s)
    await app.stop(settings.shutdown_grace_s, settings.shutdown_drain_s)
    log.info("stopped", position=app.projection.position)


def main() -> int:
    settings = ProjectorSettings()
    configure_logging(settings.log_level, settings.log_format, service="projector")
    try:
        keys = ApiKeys(ApiKeySettings().pairs())
        policies = settings.load_policies()
    except (ValueError, OSError, json.JSONDecodeError) as error:
        print(f"projector: bad configuration: {error}", file=sys.stderr)
        return 2
    asyncio.run(serve(settings, keys, policies))
    return 0


if __name__ == "__main__":
    sys.exit(main())
