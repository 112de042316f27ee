"""The outbox relay: publish committed changes to JetStream, in order, then forget them.

Rows are published in id (commit) order on one connection, many in flight at
once, each with Nats-Msg-Id = change id. Only the acknowledged prefix is
deleted; on any failure the rest is retried after a backoff, and republished
ids inside the duplicate window are dropped by JetStream. So with NATS down,
changes wait in the outbox and go out in order when it returns; none is lost
and none doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import nats
import structlog
from nats.js import JetStreamContext

from services.common.jetstream import MSG_ID_HEADER, TYPE_HEADER
from services.projector import metrics
from services.projector.adapters.outbox import OutboxQueries

_log = structlog.get_logger("projector.relay")


class OutboxRelay:
    def __init__(
        self,
        outbox: OutboxQueries,
        js: JetStreamContext,
        *,
        batch: int = 1000,
        ack_timeout_s: float = 5.0,
        idle_poll_s: float = 1.0,
    ) -> None:
        self._outbox = outbox
        self._js = js
        self._batch = batch
        self._ack_timeout_s = ack_timeout_s
        self._idle_poll_s = idle_poll_s
        self.wake = asyncio.Event()
        self.published = 0
        # Whether the last round failed (and why): readiness of publishing reads it.
        self.failing = False
        self.last_error = ""

    def nudge(self) -> None:
        """Thread-safe wake-up after a commit (call via loop.call_soon_threadsafe)."""
        self.wake.set()

    async def publish_once(self) -> int:
        """Publish one batch; returns how many rows were acknowledged and removed."""
        rows = await asyncio.to_thread(self._outbox.batch, self._batch)
        if not rows:
            return 0
        started = time.perf_counter()
        futures = []
        try:
            for _id, subject, msg_id, msg_type, payload in rows:
                futures.append(
                    await self._js.publish_async(
                        subject,
                        payload,
                        headers={MSG_ID_HEADER: msg_id, TYPE_HEADER: msg_type},
                    )
                )
        except Exception as error:
            _log.warning("publish failed", error=repr(error))
        acked = 0
        if futures:
            done, _ = await asyncio.wait(futures, timeout=self._ack_timeout_s)
            for future in futures:
                if future not in done or future.cancelled() or future.exception() is not None:
                    break
                acked += 1
            for future in futures:
                if not future.done():
                    future.cancel()
        if acked:
            await asyncio.to_thread(self._outbox.delete, [row[0] for row in rows[:acked]])
            metrics.PUBLISHED.inc(acked)
            metrics.PUBLISH_SECONDS.observe(time.perf_counter() - started)
            self.published += acked
        if acked < len(rows):
            metrics.PUBLISH_FAILURES.inc()
            msg = f"{len(rows) - acked} of {len(rows)} changes not acknowledged"
            raise ConnectionError(msg)
        return acked

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.2
        while not stop.is_set():
            try:
                published = await self.publish_once()
                backoff = 0.2
                self.failing = False
            except (ConnectionError, nats.errors.Error, OSError) as error:
                self.failing, self.last_error = True, str(error) or type(error).__name__
                _log.warning("relay retrying", error=str(error), backoff_s=backoff)
                await _sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, 3.0)
                continue
            except Exception as error:  # e.g. the database is away: wait and retry
                _log.warning("relay failed", error=repr(error), backoff_s=backoff)
                await _sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, 3.0)
                continue
            if published == 0:
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout=self._idle_poll_s)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def connect_jetstream(url: str) -> tuple[nats.NATS, JetStreamContext]:
    from services.common.jetstream import connect

    nc = await connect(url, "cohortflow-projector")
    return nc, nc.jetstream(publish_async_max_pending=4000)
