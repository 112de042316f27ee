"""Track -> delivered through all three services as processes: ingest, projector, campaign.

One in-app campaign on the lifecycle transition to `new`. TrackBatch calls at a steady
rate, each event a new user's first, so each makes a lifecycle change and an in-app send.

- delivered: the delivery's `sent_at` in the campaign's delivery log (stamped just before
  the statement that puts the message in the inbox; the commit follows within a few ms)
  minus the Track ack on the client. Both are wall clocks of this one machine.
- where the time goes, against the same Track ack: the change received by a core NATS
  subscriber (ingest and projector), and the decision's `decided_at` (stamped as the
  campaign starts deciding the batch: the wait in the change stream and the consumer).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import nats
from cohortflow.changes.v1 import changes_pb2
from cohortflow.ingest.v1 import ingest_pb2, ingest_pb2_grpc

from tests.bench.deliveries import sent_times, wait_sent
from tests.bench.report import Report, Row, percentile
from tests.support.campaign import auth, campaign, define
from tests.support.pipeline import Pipeline
from tests.support.triggers import lifecycle_new_trigger

PER_CALL = 20


@dataclass
class Timings:
    """Per user (each tracked once): Track acked, change on NATS, send decided, message
    delivered."""

    acked: dict[str, float] = field(default_factory=dict)
    on_nats: dict[str, float] = field(default_factory=dict)
    decided: dict[str, float] = field(default_factory=dict)
    delivered: dict[str, float] = field(default_factory=dict)
    sent_rate: float = 0.0
    # The machine's 1-minute load average at the end of the run (2 cores: above ~2,
    # something else competed for the CPU and the latencies say more about that).
    load: float = 0.0

    def latencies(self, stage: dict[str, float]) -> list[float]:
        return [stage[u] - t for u, t in self.acked.items() if u in stage]


async def _track_steady(
    stub: ingest_pb2_grpc.IngestServiceStub, prefix: str, rate: int, seconds: float, t: Timings
) -> None:
    """`rate` new users' first events per second, PER_CALL per TrackBatch, calls not
    waiting for each other (as many app servers would send)."""
    metadata = auth("key-shop")
    calls = int(seconds * rate / PER_CALL)
    requests = [
        ingest_pb2.TrackBatchRequest(
            events=[
                ingest_pb2.Event(
                    event_id=f"{prefix}-{n}-{i}", user_id=f"{prefix}-{n}-{i}", name="App Opened"
                )
                for i in range(PER_CALL)
            ]
        )
        for n in range(calls)
    ]

    async def call(request: ingest_pb2.TrackBatchRequest) -> None:
        await stub.TrackBatch(request, metadata=metadata)
        now = time.time()
        for e in request.events:
            t.acked[e.user_id] = now

    start = time.perf_counter()
    tasks = []
    for n, request in enumerate(requests):
        delay = start + n * PER_CALL / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(call(request)))
    await asyncio.gather(*tasks)
    t.sent_rate = calls * PER_CALL / (time.perf_counter() - start)


async def measure(
    database_url: str, nats_url: str, workdir: Path, rate: int, seconds: float
) -> Timings:
    pipeline = Pipeline(
        database_url,
        nats_url,
        workdir,
        common={"LOG_LEVEL": "WARNING"},
    )
    nc = await nats.connect(nats_url)
    timings = Timings()

    async def on_change(msg: nats.aio.msg.Msg) -> None:
        change = changes_pb2.LifecycleChanged()
        change.ParseFromString(msg.data)
        timings.on_nats.setdefault(change.header.user_id, time.time())

    try:
        await asyncio.to_thread(pipeline.start)
        await define(
            pipeline.campaign_address,
            campaign(
                name="welcome",
                body="Welcome {{ user.first_name }}",
                trigger=await lifecycle_new_trigger(pipeline),
            ),
        )
        await nc.subscribe(f"{pipeline.streams.subject_prefix}.*.lifecycle", cb=on_change)
        run = uuid.uuid4().hex[:6]
        async with grpc.aio.insecure_channel(pipeline.ingest_address) as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            # Warm up (connections, caches, first plans), outside the timed run.
            warm = Timings()
            await _track_steady(stub, f"warm{run}", rate, 1, warm)
            await wait_sent(database_url, f"warm{run}", len(warm.acked), 60, by="user_id")
            await _track_steady(stub, f"u{run}", rate, seconds, timings)
            timings.load = os.getloadavg()[0]
        timings.delivered = await wait_sent(
            database_url, f"u{run}", len(timings.acked), 60, by="user_id"
        )
        timings.decided = await asyncio.to_thread(
            sent_times, database_url, f"u{run}", "user_id", "decided_at"
        )
        return timings
    finally:
        await nc.close()
        await asyncio.to_thread(pipeline.stop)
        await pipeline.close()


def run(report: Report, database_url: str, nats_url: str, workdir: Path, heavy: bool) -> None:
    rate, seconds = 1000, 60 if heavy else 20
    t = asyncio.run(measure(database_url, nats_url, workdir, rate, seconds))
    stages = (
        ("change on NATS", t.on_nats, "changes", "ingest + projector share of the last row"),
        ("send decided", t.decided, "decided", "+ the wait in the stream and the consumer"),
        (
            "in-app delivered",
            t.delivered,
            "delivered",
            "ingest, projector, campaign as processes; goal: p99 < 500 ms at 1k/s",
        ),
    )
    for stage, reached, counted, note in stages:
        latencies = t.latencies(reached)
        report.add(
            Row(
                "campaign",
                f"Track ack -> {stage}, steady {rate:,} new users/s for {seconds} s",
                {
                    "sent events/s": t.sent_rate,
                    "p50 ms": percentile(latencies, 50) * 1e3,
                    "p99 ms": percentile(latencies, 99) * 1e3,
                    "max ms": max(latencies, default=float("nan")) * 1e3,
                    counted: len(latencies),
                    "missing": len(t.acked) - len(latencies),
                    "load 1m": t.load,
                },
                note,
            )
        )
