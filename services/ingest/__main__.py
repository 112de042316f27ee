"""python -m services.ingest: read settings, bootstrap, serve until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import os
import sys

from services.common.config import ApiKeySettings
from services.common.grpc.auth import ApiKeys
from services.common.logging import configure_logging
from services.common.net import free_port
from services.common.serve import serve_until_signal
from services.common.workers import supervise
from services.ingest.config import IngestSettings


async def serve(settings: IngestSettings, keys: ApiKeys) -> None:
    from services.ingest.bootstrap import start_ingest  # after PROMETHEUS_MULTIPROC_DIR is set

    app = await start_ingest(settings, keys)
    await serve_until_signal(
        "ingest", app, settings, serving={"http_port": app.http_port, "apps": len(keys)}
    )


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
