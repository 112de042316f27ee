"""Drive a simulated population through the public IngestService in accelerated time.

The simulated clock starts at the window's start and runs `speed` simulated seconds per
real second (speed 0: as fast as ingest takes it); each emission is sent once the
clock passes its send time, in TrackBatch calls of up to `batch_size` events with
`concurrency` calls in flight, never faster than `rate` events per second if set.
Every call is idempotent (client event ids), so a transient failure (UNAVAILABLE,
DEADLINE_EXCEEDED: ingest restarting, its database away) is sent again as it was, for
up to `services.cli.retries.RETRY_DEADLINE_S` (120 s) per call; ingest answers a
repeat of an event it had stored DUPLICATE, so nothing is stored twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial

from cohortflow.ingest.v1 import ingest_pb2, ingest_pb2_grpc

from services.cli.client import Connection, Target, first_failure
from services.cli.simulator.behaviour import simulate
from services.cli.simulator.config import SimulationConfig, Summary
from services.cli.simulator.convert import event_pb, identify_pb
from services.cli.simulator.model import US_PER_S, Emission, Kind, SimEvent

ProgressCallback = Callable[[Summary], None]
# Called as each TrackBatch is acknowledged: the event ids ingest accepted, and the
# wall-clock time of the ack (benchmarks measure latency from it).
AcceptedCallback = Callable[[list[str], float], None]


class _Driver:
    def __init__(
        self,
        config: SimulationConfig,
        conn: Connection,
        summary: Summary,
        group: asyncio.TaskGroup,
        on_progress: ProgressCallback,
        on_accepted: AcceptedCallback | None = None,
    ) -> None:
        self.config, self.summary, self.group = config, summary, group
        self.on_accepted = on_accepted
        self.conn = conn
        self.stub = ingest_pb2_grpc.IngestServiceStub(conn.channel)
        self.on_progress = on_progress
        self.slots = asyncio.Semaphore(config.concurrency)
        self.batch: list[SimEvent] = []
        self.t0 = time.monotonic()
        self.next_send = self.t0

    def sim_now_us(self) -> float:
        if self.config.speed <= 0:
            return float("inf")
        elapsed = time.monotonic() - self.t0
        return self.summary.window.start_us + elapsed * self.config.speed * US_PER_S

    def tick(self) -> None:
        window = self.summary.window
        self.summary.simulated_us = int(min(self.sim_now_us(), window.end_us))
        self.on_progress(self.summary)

    async def wait_for(self, send_us: int) -> None:
        """Until the simulated clock reaches `send_us`; the partial batch goes out first."""
        while (ahead_us := send_us - self.sim_now_us()) > 0:
            await self.flush()
            await asyncio.sleep(min(ahead_us / US_PER_S / self.config.speed, 0.2))
            self.tick()

    async def pace(self, count: int) -> None:
        if self.config.rate <= 0:
            return
        now = time.monotonic()
        self.next_send = max(self.next_send, now)
        wait, self.next_send = self.next_send - now, self.next_send + count / self.config.rate
        if wait > 0:
            await asyncio.sleep(wait)

    async def spawn(self, count: int, call: Callable[[], Awaitable[None]]) -> None:
        """Start `call()` once the rate allows and a slot is free."""
        await self.pace(count)
        await self.slots.acquire()
        self.summary.sent += count
        self.group.create_task(self._guarded(call))

    async def _guarded(self, call: Callable[[], Awaitable[None]]) -> None:
        try:
            await call()
        finally:
            self.slots.release()
        self.summary.calls += 1
        self.tick()

    async def flush(self, up_to: int | None = None) -> None:
        """Send the pending events, or only full batches of them while more may come."""
        size = self.config.batch_size
        while self.batch and (up_to is None or len(self.batch) >= size):
            chunk, self.batch = self.batch[:size], self.batch[size:]
            request = ingest_pb2.TrackBatchRequest(events=[event_pb(e) for e in chunk])
            await self.spawn(len(chunk), partial(self.track, request))

    async def track(self, request: ingest_pb2.TrackBatchRequest) -> None:
        reply = await self.conn.unary(
            self.stub.TrackBatch, request, deadline_s=120, idempotent=True
        )
        acked = time.time()
        for result in reply.results:
            self.summary.count(result)
        if self.on_accepted is not None:
            accepted = ingest_pb2.EventResult.STATUS_ACCEPTED
            self.on_accepted([r.event_id for r in reply.results if r.status == accepted], acked)

    async def identify(self, request: ingest_pb2.IdentifyRequest) -> None:
        reply = await self.conn.unary(self.stub.Identify, request, deadline_s=60, idempotent=True)
        self.summary.count(reply.result)

    async def send(self, emission: Emission) -> None:
        await self.wait_for(emission.send_us)
        if emission.identify is not None:
            self.summary.identifies += 1
            request = identify_pb(emission.identify)
            await self.spawn(1, partial(self.identify, request))
            return
        if emission.kind is Kind.RETRY:
            # a retry is a call of its own, as a client re-sending its batch would make
            await self.flush()
            self.summary.retried_events += len(emission.events)
        elif emission.kind is Kind.LATE:
            self.summary.late_events += len(emission.events)
        self.batch.extend(emission.events)
        await self.flush(up_to=self.config.batch_size)


async def run_simulation(
    config: SimulationConfig,
    ingest_address: str,
    key: str,
    on_progress: ProgressCallback | None = None,
    *,
    now: datetime | None = None,
    on_accepted: AcceptedCallback | None = None,
) -> Summary:
    """Simulate `config.users` users over `config.days` through ingest at `ingest_address`.

    Raises ConfigError for a window ingest would refuse, CliError when a call fails
    for good (at once for a bad request; a transient failure after retrying it for
    RETRY_DEADLINE_S). Same config and start: the same ids and events.
    """
    window = config.window(now or datetime.now(UTC))
    prefix = config.id_prefix(window)
    summary = Summary(users=config.users, window=window, id_prefix=prefix)
    emissions = simulate(config.seed, config.users, window, config.behaviour, prefix)
    target = Target(ingest=ingest_address, key=key)
    try:
        async with Connection(target, "ingest") as conn, asyncio.TaskGroup() as group:
            driver = _Driver(
                config, conn, summary, group, on_progress or (lambda s: None), on_accepted
            )
            for emission in emissions:
                await driver.send(emission)
            await driver.flush()
    except ExceptionGroup as failures:
        raise first_failure(failures) from None
    summary.simulated_us = window.end_us
    summary.finished = time.monotonic()
    return summary
