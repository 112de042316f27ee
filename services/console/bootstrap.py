"""The one place that builds the console's parts: users store, gRPC clients, change feed."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.applications import Starlette

from services.common.config import ApiKeySettings
from services.common.jetstream import ChangeStreamSettings
from services.console.backends import Backends
from services.console.config import ConsoleSettings
from services.console.health import ConsoleHealth
from services.console.live import ChangeFeed
from services.console.users import ConsoleUsers
from services.console.web.app import create_app


@dataclass
class Console:
    app: Starlette
    users: ConsoleUsers
    backends: Backends
    feed: ChangeFeed
    health: ConsoleHealth

    async def close(self) -> None:
        await self.health.close()
        await self.feed.close()
        await self.backends.close()
        self.users.close()


def build_console(
    settings: ConsoleSettings,
    keys: ApiKeySettings | None = None,
    streams: ChangeStreamSettings | None = None,
) -> Console:
    """Everything the console needs, wired; nothing is connected until first used
    (health probes begin with `console.health.start()`, on the serving event loop)."""
    users = ConsoleUsers.open(settings.database_url, settings.db_pool_size)
    backends = Backends(
        settings.projector,
        settings.campaign,
        (keys or ApiKeySettings()).pairs(),
        settings.rpc_timeout_s,
    )
    feed = ChangeFeed(settings.nats_url, streams or ChangeStreamSettings())
    health = ConsoleHealth(
        settings.database_url,
        backends,
        interval_s=settings.health_interval_s,
        timeout_s=settings.health_timeout_s,
        failures=settings.health_failures,
    )
    app = create_app(
        users,
        backends,
        feed,
        health,
        session_hours=settings.session_hours,
        cookie_secure=settings.cookie_secure,
    )
    return Console(app=app, users=users, backends=backends, feed=feed, health=health)
