"""python -m services.projector: read settings, bootstrap, serve until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import json
import sys

from services.common.config import ApiKeySettings
from services.common.grpc.auth import ApiKeys
from services.common.logging import configure_logging
from services.common.serve import serve_until_signal
from services.projector.bootstrap import start_projector
from services.projector.config import Policies, ProjectorSettings


async def serve(settings: ProjectorSettings, keys: ApiKeys, policies: Policies) -> None:
    app = await start_projector(settings, keys, policies=policies)
    await serve_until_signal(
        "projector",
        app,
        settings,
        stopped=lambda: {"position": app.projection.position if app.projection else None},
    )


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
