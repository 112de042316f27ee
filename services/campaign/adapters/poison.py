"""Unreadable change messages, kept (with why) before they are terminated."""

from __future__ import annotations

from nats.aio.msg import Msg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from services.campaign.domain.clock import Clock
from services.campaign.schema import POISON
from services.eventlog.events import us_to_datetime


class PoisonLog:
    def __init__(self, pool: AsyncConnectionPool, clock: Clock) -> None:
        self._pool = pool
        self._clock = clock

    async def record(self, msg: Msg, reason: str) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                f"INSERT INTO {POISON} (stream_sequence, subject, headers, payload, reason,"
                " received_at) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (
                    msg.metadata.sequence.stream,
                    msg.subject,
                    Jsonb(dict(msg.headers or {})),
                    bytes(msg.data),
                    reason,
                    us_to_datetime(self._clock.now_us()),
                ),
            )
