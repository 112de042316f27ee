"""python -m services.ingest: read settings, bootstrap, serve until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import structlog
from prometheus_client import start_http_server

from services.common.config import ApiKeySettings
from services.common.grpc.auth import ApiKeys
from services.common.logging import configure_logging
from services.common.workers import supervise
from services.devstack.embedded import free_port
from services.ingest.config import IngestSettings


async def serve(settings: IngestSettings, keys: ApiKeys) -> None:
    from services.ingest.bootstrap import start_ingest  # after PROMETHEUS_MULTIPROC_DIR is set

    log = structlog.get_logger("ingest")
    app = await start_ingest(settings, keys)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.metrics_host)
    log.info(
        "serving",
        listen=settings.listen,
        port=app.port,
        http_port=app.http_port,
        metrics_port=settings.metrics_port,
        apps=len(keys),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping", drain_s=settings.shutdown_drain_s, grace_s=settings.shutdown_grace_s)
    await app.stop(settings.shutdown_grace_s, settings.shutdown_drain_s)
    log.info("stopped")


def share_http_port(settings: IngestSettings) -> None:
    """Give the workers one HTTP port: a free one chosen here for port 0."""
    address = settings.http_address()
    if address is not None and address[1] == 0:
        os.environ["INGEST_HTTP_LISTEN"] = f"{address[0]}:{free_port(0, address[0])}"


def main() -> int:
    settings = IngestSettings()
    configure_logging(settings.log_level, settings.log_format, service="ingest")
    try:
        keys = ApiKeys(ApiKeySettings().pairs())
    except (ValueError, OSError) as error:
        print(f"ingest: bad API key configuration: {error}", file=sys.stderr)
        return 2
    if not len(keys):
        print(
            "ingest: no API keys configured; set COHORTFLOW_API_KEYS=app_id:key"
            " or COHORTFLOW_API_KEYS_FILE",
            file=sys.stderr,
        )
        return 2
    if settings.workers > 1:
        share_http_port(settings)
        return supervise(
            "services.ingest",
            settings.workers,
            settings.listen,
            listen_env="INGEST_LISTEN",
            metrics_env="INGEST_METRICS_PORT",
            workers_env="INGEST_WORKERS",
            metrics_host=settings.metrics_host,
            metrics_port=settings.metrics_port,
        )
    asyncio.run(serve(settings, keys))
    return 0


if __name__ == "__main__":
    sys.exit(main())
