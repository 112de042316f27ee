"""The simulator end to end: realistic traffic through ingest, projector and campaign.

The three services run as processes (tests.support.pipeline). Two in-app campaigns
act on what the traffic causes: a welcome on the lifecycle transition to `new`, and a
nudge on entering a segment (added to cart in the last 7 days). The simulator
(`cohortflow simulate`'s engine: installs, habits, carts, orders, late and retried
batches) sends its population through TrackBatch at a capped rate, and the latency of
each event that caused something is measured from its Track ack (the simulator's
hook) to:

- change on NATS: a core subscriber receiving a change whose cause names the event;
- in-app delivered: the delivery's `sent_at` for a change the event caused.

Late events (older than the projector's late limit) and retries cause nothing and are
not counted; ticks cause changes without an event and are not counted either.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import nats
import psycopg
from cohortflow.changes.v1 import changes_pb2
from cohortflow.segments.v1 import segments_pb2, segments_pb2_grpc
from google.protobuf import duration_pb2
from nats.aio.msg import Msg

from services.cli.simulator import SimulationConfig, run_simulation
from services.common.jetstream import TYPE_HEADER
from services.common.segment_wire import condition_from_dict
from tests.bench.report import Report, Row, percentile
from tests.support.campaign import auth, campaign, define
from tests.support.infra import NatsForTests
from tests.support.pipeline import Pipeline
from tests.support.triggers import lifecycle_new_trigger

_TYPES = {
    cls.DESCRIPTOR.full_name: cls
    for cls in (
        changes_pb2.LifecycleChanged,
        changes_pb2.RfmGroupChanged,
        changes_pb2.MembershipChanged,
    )
}
CARTED = "carted-this-week"


@dataclass
class Timings:
    acked: dict[str, float] = field(default_factory=dict)  # event id -> Track ack
    on_nats: dict[str, float] = field(default_factory=dict)  # event id -> first change seen
    causes: dict[str, list[str]] = field(default_factory=dict)  # change id -> event ids
    delivered: dict[str, float] = field(default_factory=dict)  # event id -> first in-app sent
    events: int = 0
    changes: int = 0
    sends: int = 0
    seconds: float = 0.0
    load: float = 0.0

    def latencies(self, stage: dict[str, float]) -> list[float]:
        return [t - self.acked[e] for e, t in stage.items() if e in self.acked]


async def _segment(pipeline: Pipeline) -> segments_pb2.Segment:
    condition = condition_from_dict(
        {"events": {"name": "Added to Cart", "window": "7d", "op": ">=", "value": 1}}
    )
    async with grpc.aio.insecure_channel(pipeline.projector_address) as channel:
        stub = segments_pb2_grpc.SegmentServiceStub(channel)
        created = await stub.CreateSegment(
            segments_pb2.CreateSegmentRequest(
                segment_id=CARTED,
                segment=segments_pb2.Segment(display_name="Carted this week", condition=condition),
            ),
            metadata=auth("key-shop"),
        )
        return created.segment


def _delivered(database_url: str) -> list[tuple[str, float]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT change_id, extract(epoch FROM sent_at) FROM campaign_deliveries"
            " WHERE status = 'sent'"
        ).fetchall()
    return [(change_id, float(at)) for change_id, at in rows]


async def measure(
    database_url: str, nats_url: str, workdir: Path, users: int, days: float, rate: float
) -> Timings:
    pipeline = Pipeline(
        database_url,
        nats_url,
        workdir,
        common={"LOG_LEVEL": "WARNING"},
        # The simulated history reaches back `days`: fold all of it into lifecycle.
        projector={
            "PROJECTOR_POLICIES": json.dumps({"*": {"lifecycle": {"late_limit_days": 400}}})
        },
    )
    timings = Timings()
    nc = await nats.connect(nats_url)

    async def on_change(msg: Msg) -> None:
        now = time.time()
        message = _TYPES[(msg.headers or {}).get(TYPE_HEADER, "")]()
        message.ParseFromString(msg.data)
        header = message.header  # type: ignore[attr-defined]
        timings.changes += 1
        ids = list(header.cause.event_ids)
        timings.causes[header.change_id] = ids
        for event_id in ids:
            timings.on_nats.setdefault(event_id, now)

    def on_accepted(event_ids: list[str], at: float) -> None:
        for event_id in event_ids:
            timings.acked[event_id] = at

    try:
        await asyncio.to_thread(pipeline.start)
        segment = await _segment(pipeline)
        # The simulated history reaches back `days` and its changes are dated then: this
        # measures latency, so the campaigns act on changes of any age (default: 1 hour).
        any_age = duration_pb2.Duration(seconds=3650 * 86_400)
        await define(
            pipeline.campaign_address,
            campaign(
                name="welcome",
                body="Welcome!",
                trigger=await lifecycle_new_trigger(pipeline),
                max_trigger_age=any_age,
            ),
        )
        nudge = campaign(
            name="cart nudge", body="Still thinking about it?", max_trigger_age=any_age
        )
        nudge.trigger.segment.segment_id = segment.segment_id
        nudge.trigger.segment.direction = nudge.trigger.segment.DIRECTION_ENTERED
        await define(pipeline.campaign_address, nudge)
        await nc.subscribe(f"{pipeline.streams.subject_prefix}.>", cb=on_change)
        config = SimulationConfig(users=users, days=days, seed=7, speed=0, rate=rate)
        started = time.perf_counter()
        summary = await run_simulation(
            config, pipeline.ingest_address, "key-shop", on_accepted=on_accepted
        )
        timings.seconds = time.perf_counter() - started
        timings.events = summary.accepted
        timings.load = os.getloadavg()[0]
        # Let the tail through: changes and sends of the last events.
        deadline = time.monotonic() + 60
        last = -1
        while time.monotonic() < deadline:
            await asyncio.sleep(2)
            sent = await asyncio.to_thread(_delivered, database_url)
            if len(sent) == last:
                break
            last = len(sent)
        timings.sends = last
        for change_id, at in sent:
            for event_id in timings.causes.get(change_id, []):
                if at < timings.delivered.get(event_id, float("inf")):
                    timings.delivered[event_id] = at
        return timings
    finally:
        await nc.close()
        await asyncio.to_thread(pipeline.stop)
        await pipeline.close()


def run(report: Report, database_url: str, workdir: Path, heavy: bool = False) -> None:
    users, days, rate = (5000, 30.0, 1000.0) if heavy else (1500, 30.0, 1000.0)
    servers = NatsForTests(workdir / "simulation-nats")
    try:
        t = asyncio.run(measure(database_url, servers.url, workdir, users, days, rate))
    finally:
        servers.close()
    case = f"simulator, {users:,} users over {days:g} days, TrackBatch capped at {rate:,.0f} ev/s"
    for stage, reached, note in (
        ("change on NATS", t.on_nats, "events that caused a lifecycle, RFM or segment change"),
        ("in-app delivered", t.delivered, "welcome (new) and cart nudge (segment entered)"),
    ):
        latencies = t.latencies(reached)
        report.add(
            Row(
                "simulation",
                f"Track ack -> {stage}; {case}",
                {
                    "events": t.events,
                    "events/s": t.events / t.seconds if t.seconds else float("nan"),
                    "measured": len(latencies),
                    "p50 ms": percentile(latencies, 50) * 1e3,
                    "p90 ms": percentile(latencies, 90) * 1e3,
                    "p99 ms": percentile(latencies, 99) * 1e3,
                    "max ms": max(latencies, default=float("nan")) * 1e3,
                    "changes": t.changes,
                    "sends": t.sends,
                    "load 1m": t.load,
                },
                note,
            )
        )
