"""Reading the campaign's delivery log in benchmarks: when each send went out."""

from __future__ import annotations

import asyncio
import time
from typing import Literal

import psycopg

Key = Literal["change_id", "user_id"]
Moment = Literal["sent_at", "decided_at"]


def sent_times(
    database_url: str, prefix: str, by: Key = "change_id", at: Moment = "sent_at"
) -> dict[str, float]:
    """`by` (change id or user id, starting with `prefix-`) -> when the send went out (or
    was decided, `at`), as Unix seconds; sent ones only."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            f"SELECT {by}, extract(epoch FROM {at}) FROM campaign_deliveries"
            f" WHERE status = 'sent' AND {by} LIKE %s",
            (prefix + "-%",),
        ).fetchall()
    return {key: float(at) for key, at in rows}


async def wait_sent(
    database_url: str, prefix: str, count: int, within: float, by: Key = "change_id"
) -> dict[str, float]:
    """sent_times() once `count` are sent, or whatever is sent after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        sent = await asyncio.to_thread(sent_times, database_url, prefix, by)
        if len(sent) >= count or time.monotonic() > deadline:
            return sent
        await asyncio.sleep(0.2)
