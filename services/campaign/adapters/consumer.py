"""The change stream's durable JetStream pull consumer.

Fetch a batch -> decode (unreadable messages are recorded and `term`ed) ->
decide and record the whole batch in one transaction -> ack. A transient
failure (database down) `nak`s the batch with a growing delay; a batch that
fails for another reason is retried one message at a time, so a single poison
message is found, recorded and terminated instead of blocking the stream.

`refresh_info` asks JetStream for the consumer's state (pending, ack-pending,
redelivered) for the gauges; it fails while NATS or the consumer cannot be reached,
which is how readiness learns that changes cannot be fetched.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

import psycopg
import psycopg_pool
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from services.campaign import metrics
from services.campaign.adapters.change_messages import PoisonMessage, decode_change
from services.campaign.domain.changes import Change
from services.common.jetstream import ChangeStreamSettings, ChangeSubjects, ensure_change_stream
from services.common.readiness import Check

_log = structlog.get_logger("campaign.consumer")
TRANSIENT = (psycopg.OperationalError, psycopg_pool.PoolTimeout, OSError, TimeoutError)

Process = Callable[[Sequence[Change]], Awaitable[object]]
RecordPoison = Callable[[Msg, str], Awaitable[None]]


class ChangeConsumer:
    def __init__(
        self,
        nc: NATS,
        stream: ChangeStreamSettings,
        durable: str,
        process: Process,
        record_poison: RecordPoison,
        *,
        batch: int = 256,
        ack_wait_s: float = 30.0,
        nak_base_s: float = 0.5,
        nak_max_s: float = 30.0,
        database: Check | None = None,
    ) -> None:
        """`database`, if given, hears whether each batch's decisions could be committed."""
        self._nc = nc
        self._stream = stream
        self._durable = durable
        self._process = process
        self._record_poison = record_poison
        self._batch = batch
        self._ack_wait_s = ack_wait_s
        self._nak_base_s = nak_base_s
        self._nak_max_s = nak_max_s
        self._subscription: JetStreamContext.PullSubscription | None = None
        self._database = database

    async def start(self) -> None:
        js = self._nc.jetstream()
        await ensure_change_stream(js, self._stream)
        self._subscription = await js.pull_subscribe(
            ChangeSubjects(self._stream.subject_prefix).everything,
            durable=self._durable,
            stream=self._stream.stream,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=self._ack_wait_s,
                max_deliver=-1,  # never drop a change silently; poison is terminated
                max_ack_pending=max(1000, self._batch * 4),
            ),
        )

    async def refresh_info(self, timeout_s: float = 5.0) -> None:
        """Update the consumer gauges from JetStream; raises if NATS cannot tell."""
        if not self._nc.is_connected:
            raise ConnectionError("not connected to NATS")
        info = await self._nc.jetstream().consumer_info(
            self._stream.stream, self._durable, timeout=timeout_s
        )
        metrics.CONSUMER_PENDING.labels(self._durable).set(info.num_pending or 0)
        metrics.CONSUMER_ACK_PENDING.labels(self._durable).set(info.num_ack_pending or 0)
        metrics.CONSUMER_REDELIVERED.labels(self._durable).set(info.num_redelivered or 0)
        metrics.CONSUMER_MAX_ACK_PENDING.labels(self._durable).set(info.config.max_ack_pending or 0)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.poll()

    async def poll(self, wait_s: float = 0.5) -> int:
        """Fetch one batch (waiting up to `wait_s`) and handle it; messages fetched."""
        assert self._subscription is not None, "start() first"
        try:
            messages = await self._subscription.fetch(self._batch, timeout=wait_s)
        except (NatsTimeoutError, TimeoutError):
            return 0
        except Exception as error:  # connection trouble: nats-py reconnects
            _log.warning("fetch failed", error=repr(error))
            await asyncio.sleep(wait_s)
            return 0
        await self.handle(messages)
        return len(messages)

    async def handle(self, messages: Sequence[Msg]) -> None:
        readable: list[tuple[Msg, Change]] = []
        for msg in messages:
            try:
                readable.append((msg, decode_change(msg.headers, msg.data)))
            except PoisonMessage as error:
                await self._poison(msg, str(error))
        if not readable:
            return
        started = time.perf_counter()
        try:
            outcome = await self._process([change for _, change in readable])
        except TRANSIENT as error:
            if self._database is not None:
                self._database.failed(error)
            await self._nak_all([m for m, _ in readable], error)
            return
        except Exception as error:
            _log.warning("batch failed; retrying one by one", error=repr(error))
            await self._one_by_one(readable)
            return
        if self._database is not None:
            self._database.passed()
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        redelivered = getattr(outcome, "redelivered", 0)
        metrics.CHANGES.labels("decided").inc(len(readable) - redelivered)
        if redelivered:
            metrics.CHANGES.labels("redelivered").inc(redelivered)
        for msg, _ in readable:
            await msg.ack()

    async def _one_by_one(self, readable: list[tuple[Msg, Change]]) -> None:
        for msg, change in readable:
            try:
                await self._process([change])
            except TRANSIENT as error:
                await self._nak_all([msg], error)
            except Exception as error:
                _log.error("poison change", change_id=change.change_id, error=repr(error))
                await self._poison(msg, f"processing failed: {error!r}")
            else:
                metrics.CHANGES.labels("decided").inc()
                await msg.ack()

    def _nak_delay(self, msg: Msg) -> float:
        delivered = msg.metadata.num_delivered or 1
        return min(self._nak_max_s, self._nak_base_s * 2 ** (delivered - 1))

    async def _nak_all(self, messages: Sequence[Msg], error: BaseException) -> None:
        _log.warning("transient failure; will retry", error=repr(error), messages=len(messages))
        metrics.CHANGES.labels("retried").inc(len(messages))
        for msg in messages:
            await msg.nak(delay=self._nak_delay(msg))

    async def _poison(self, msg: Msg, reason: str) -> None:
        try:
            await self._record_poison(msg, reason)
        except TRANSIENT as error:
            await self._nak_all([msg], error)
            return
        metrics.CHANGES.labels("poison").inc()
        _log.error("poison message terminated", subject=msg.subject, reason=reason)
        await msg.term()

    async def close(self) -> None:
        if self._subscription is not None:
            await self._subscription.unsubscribe()
