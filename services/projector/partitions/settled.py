"""When a partitioned deployment has settled: every partition folded, everything sent.

The determinism check compares what was published with a replay up to each partition's
head, so it first waits until the live workers have folded every partition's whole log,
published every change (no outbox rows) and relayed every letter (no mail rows: a letter
still to go would add to a partition's log after the heads were read), twice in a row
with the same heads.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import psycopg
from psycopg import sql

from services.eventlog.partitioned import PartitionedLog, open_partitioned_log
from services.eventlog.partitions import Deployment
from services.projector import schema
from services.projector.partitions.mail import MAIL_TABLE


@dataclass(frozen=True)
class Standing:
    """Each partition's log head and committed position, and what is still to be sent."""

    heads: dict[int, int]
    folded: dict[int, int]
    unsent: int

    @property
    def settled(self) -> bool:
        return self.unsent == 0 and all(self.folded[p] >= h for p, h in self.heads.items())


def standing(deployment: Deployment, log: PartitionedLog) -> Standing:
    heads = {p: log.head(p) for p in range(deployment.partitions)}
    tracked: dict[str, int] = {}
    unsent = 0
    for url in deployment.databases():
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                sql.SQL("SELECT application_name, notification_id FROM public.{}").format(
                    sql.Identifier(schema.TRACKING_TABLE)
                )
            )
            tracked.update({name: int(n) for name, n in rows})
            for table in (schema.OUTBOX_TABLE, MAIL_TABLE):
                row = conn.execute(
                    sql.SQL("SELECT count(*) FROM public.{}").format(sql.Identifier(table))
                ).fetchone()
                unsent += int(row[0]) if row else 0
    folded = {p: tracked.get(deployment.log_name(p), 0) for p in heads}
    return Standing(heads, folded, unsent)


async def wait_settled(deployment: Deployment, *, timeout_s: float = 600.0) -> dict[int, int]:
    """Each partition's log head (notification id) once the live workers have folded and
    sent everything, with nothing appended since the previous look."""
    deadline = time.monotonic() + timeout_s
    log = await asyncio.to_thread(open_partitioned_log, deployment, pool_size=1)
    try:
        previous: dict[int, int] | None = None
        while True:
            now = await asyncio.to_thread(standing, deployment, log)
            if now.settled and now.heads == previous:
                return now.heads
            previous = now.heads if now.settled else None
            if time.monotonic() > deadline:
                behind = [p for p, h in now.heads.items() if now.folded[p] < h]
                msg = (
                    f"the live workers did not settle in {timeout_s:.0f} s (partitions behind:"
                    f" {behind or 'none'}; {now.unsent:,} changes or letters not yet sent):"
                    " are the projectors running?"
                )
                raise TimeoutError(msg)
            await asyncio.sleep(0.2)
    finally:
        log.close()
