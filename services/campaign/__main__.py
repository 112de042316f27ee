"""python -m services.campaign: read settings, bootstrap, serve until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import sys

from services.campaign.config import CampaignSettings
from services.common.config import ApiKeySettings
from services.common.grpc.auth import ApiKeys
from services.common.jetstream import ChangeStreamSettings
from services.common.logging import configure_logging
from services.common.serve import serve_until_signal


async def serve(settings: CampaignSettings, keys: ApiKeys) -> None:
    from services.campaign.bootstrap import start_campaign

    stream = ChangeStreamSettings()
    app = await start_campaign(settings, keys, stream=stream)
    await serve_until_signal(
        "campaign",
        app,
        settings,
        serving={
            "stream": stream.stream,
            "consumer": settings.consumer,
            "channels": sorted(app.dispatcher.channels()),
        },
    )


def main() -> int:
    settings = CampaignSettings()
    configure_logging(settings.log_level, settings.log_format, service="campaign")
    # Provider calls are logged by us; the HTTP stack's debug lines would drown them.
    for noisy in ("httpx", "httpcore", "aiosmtpd", "mail.log"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLogger().level))
    try:
        keys = ApiKeys(ApiKeySettings().pairs())
        settings.secrets()
    except (ValueError, OSError) as error:
        print(f"campaign: bad configuration: {error}", file=sys.stderr)
        return 2
    if not len(keys):
        print(
            "campaign: no API keys configured; set COHORTFLOW_API_KEYS=app_id:key"
            " or COHORTFLOW_API_KEYS_FILE",
            file=sys.stderr,
        )
        return 2
    asyncio.run(serve(settings, keys))
    return 0


if __name__ == "__main__":
    sys.exit(main())
