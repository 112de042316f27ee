"""Sending what is due: the in-app inbox in one statement, providers under a lease.

In-app: inbox row and "sent" commit together, so exactly once by construction.
Providers (webhook, email, push, SMS): a batch of due sends is leased and
committed, then the calls are made (each with the send id as its idempotency
key), each outcome recorded as it comes in. A process that dies mid-call leaves
its lease to expire; the send is then retried with the same key, so a receiver
that honours the key sees it once. Retries back off exponentially with full jitter;
after `max_attempts` calls the send is dead-lettered (failed, "dead_letter").
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping

import structlog
from psycopg_pool import AsyncConnectionPool

from services.campaign import metrics
from services.campaign.adapters import deliveries as db
from services.campaign.adapters.catalog import CampaignCatalog
from services.campaign.adapters.outcomes import OutcomeLog
from services.campaign.domain.clock import Clock
from services.campaign.domain.ports import ChannelSender, Outgoing, SendResult

_log = structlog.get_logger("campaign.dispatcher")


def backoff_s(attempt: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(max, base * 2^(attempt-1))]; at least 10 ms."""
    return max(0.01, rng.uniform(0, min(max_s, base_s * 2 ** max(0, attempt - 1))))


class Dispatcher:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        catalog: CampaignCatalog,
        senders: Mapping[str, ChannelSender],
        clock: Clock,
        *,
        batch: int = 500,
        concurrency: int = 32,
        lease_s: float = 60.0,
        max_attempts: int = 5,
        retry_base_s: float = 1.0,
        retry_max_s: float = 300.0,
        poll_s: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        self._pool = pool
        self._catalog = catalog
        self._senders = senders
        self._clock = clock
        self._batch = batch
        self._limit = asyncio.Semaphore(concurrency)
        self._lease_s = lease_s
        self._max_attempts = max_attempts
        self._retry_base_s = retry_base_s
        self._retry_max_s = retry_max_s
        self._poll_s = poll_s
        self._rng = rng or random.Random()
        self.wake = asyncio.Event()
        self._swept: set[str] = set()
        self._outcomes = OutcomeLog(pool, clock)

    def channels(self) -> list[str]:
        return ["in_app", *self._senders]

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                busy = await self.step()
            except Exception as error:  # the database went away: try again soon
                _log.warning("dispatch failed", error=repr(error))
                busy = False
            if not busy:
                self.wake.clear()
                waiter = asyncio.ensure_future(self.wake.wait())
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait(
                    {waiter, stopper}, timeout=self._poll_s, return_when=asyncio.FIRST_COMPLETED
                )
                waiter.cancel()
                stopper.cancel()

    async def step(self) -> bool:
        """Send one round of due messages; True if there may be more right away."""
        await self._cancel_inactive()
        now = self._clock.now_us()
        async with self._pool.connection() as conn:
            in_app = await db.deliver_in_app(conn, now, self._batch)
        if in_app:
            metrics.SENDS.labels("in_app", "sent").inc(in_app)
        async with self._pool.connection() as conn:
            claimed = await db.claim_due(conn, now, self._batch, self._lease_s)
        if claimed:
            results = await asyncio.gather(
                *(self._dispatch(c) for c in claimed), return_exceptions=True
            )
            for result in results:
                if isinstance(result, BaseException):
                    raise result  # e.g. the database went away: the sends stay leased
        return in_app >= self._batch or len(claimed) >= self._batch

    async def _dispatch(self, claimed: db.Claimed) -> None:
        """Call the provider and record the outcome, holding a slot throughout: at most
        `concurrency` calls are ever made and not yet recorded (see outcomes.py)."""
        async with self._limit:
            await self._outcomes.record(await self._send(claimed))

    async def _cancel_inactive(self) -> None:
        """Cancel what paused or archived campaigns still had pending (once each)."""
        await asyncio.to_thread(self._catalog.refresh)
        inactive = set(self._catalog.inactive_ids())
        self._swept &= inactive  # a resumed campaign is swept again when next paused
        new = sorted(inactive - self._swept)
        if new:
            async with self._pool.connection() as conn:
                await db.cancel_campaigns(conn, new, "campaign_paused")
            self._swept.update(new)

    async def _send(self, claimed: db.Claimed) -> db.Outcome:
        channel = claimed.channel
        if claimed.attempts > self._max_attempts:
            metrics.SENDS.labels(channel, "dead_letter").inc()
            return db.Outcome(claimed.send_id, "failed", "dead_letter", "lease expired")
        sender = self._senders.get(channel)
        if sender is None:
            metrics.SENDS.labels(channel, "failed").inc()
            return db.Outcome(claimed.send_id, "failed", "channel_not_configured")
        content = claimed.content or {}
        message = Outgoing(
            send_id=claimed.send_id,
            app_id=claimed.app_id,
            campaign_id=claimed.campaign_id,
            user_id=claimed.user_id,
            channel=channel,
            address=claimed.address,
            title=content.get("title", ""),
            body=content.get("body", ""),
            data=content.get("data", {}),
            variant=claimed.grp,
            change_id=claimed.change_id,
            sender=content.get("sender", ""),
        )
        started = time.perf_counter()
        try:
            result = await sender.send(message)
        except Exception as error:  # an adapter bug must not lose the send
            result = SendResult(ok=False, retryable=True, error=repr(error))
        metrics.SEND_SECONDS.labels(channel).observe(time.perf_counter() - started)
        return self._outcome(claimed, result)

    def _outcome(self, claimed: db.Claimed, result: SendResult) -> db.Outcome:
        channel, send_id = claimed.channel, claimed.send_id
        if result.ok:
            metrics.SENDS.labels(channel, "sent").inc()
            return db.Outcome(send_id, "sent", provider_id=result.provider_id)
        if not result.retryable:
            metrics.SENDS.labels(channel, "failed").inc()
            return db.Outcome(send_id, "failed", result.reason or "rejected", result.error)
        if claimed.attempts >= self._max_attempts:
            metrics.SENDS.labels(channel, "dead_letter").inc()
            _log.warning("dead letter", send_id=send_id, channel=channel, error=result.error)
            return db.Outcome(send_id, "failed", "dead_letter", result.error)
        wait = backoff_s(claimed.attempts, self._retry_base_s, self._retry_max_s, self._rng)
        if result.retry_after_s is not None:
            wait = max(wait, min(result.retry_after_s, self._retry_max_s))
        metrics.SENDS.labels(channel, "retry").inc()
        due = self._clock.now_us() + int(wait * 1_000_000)
        return db.Outcome(send_id, "pending", "retrying", result.error, due_us=due)
