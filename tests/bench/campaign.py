"""Campaign throughput and latency through the in-app channel, beside a bare consumer.

The campaign service runs as its own process on the same PostgreSQL and NATS. Changes are
published onto a JetStream stream of their own exactly as the projector publishes them
(MembershipChanged, Nats-Msg-Id, Cohortflow-Type). One in-app campaign, personalised with
a profile trait, triggers on every change.

- burst: N changes published at once; sends/s = N / (last send - first publish).
- steady: 1,000 changes/s for a while; latency = the delivery's sent_at (taken just before
  the statement that puts it in the inbox; its commit follows within a few ms) - the
  publish time.
- pipeline (tests/bench/pipeline.py): ingest, projector and campaign as processes; Track
  at 1,000 new users/s; latency = in-app delivered - Track acked on the client.
- baseline: a bare durable pull consumer that fetches, inserts one row per change in one
  transaction and acks (the floor of "consume, record, ack" without any campaign logic).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import grpc
import nats
import psycopg
from cohortflow.campaigns.v1 import campaigns_pb2 as pb
from cohortflow.campaigns.v1 import campaigns_pb2_grpc
from nats.js.api import AckPolicy, ConsumerConfig

from services.common.jetstream import ChangeStreamSettings, ensure_change_stream
from services.projector.schema import PROFILES_TABLE
from tests.bench import pipeline
from tests.bench.deliveries import wait_sent
from tests.bench.report import Report, Row, percentile, sibling_database
from tests.support.campaign import (
    auth,
    campaign,
    campaign_env,
    membership,
    subject_of,
    unique_stream,
)
from tests.support.infra import NatsForTests
from tests.support.processes import ServiceProcess

NAME = "campaign"
USERS = 10_000
STEADY_RATE = 1000


def _load_profiles(database_url: str) -> None:
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY {PROFILES_TABLE} (app_id, user_id, traits) FROM STDIN") as copy:
            for i in range(USERS):
                copy.write_row(("shop", f"user-{i}", f'{{"first_name": "User {i}"}}'))
        conn.commit()


def _messages(run: str, count: int, start: int = 0) -> list:
    return [
        membership("shop", f"user-{i % USERS}", "active", change_id=f"{run}-{i}")
        for i in range(start, start + count)
    ]


async def _publish_burst(js, stream: ChangeStreamSettings, messages: list) -> float:
    """Publish without waiting for each ack (acks collected at the end); start time."""
    started = time.time()
    pending = []
    for message in messages:
        pending.append(
            await js.publish_async(
                subject_of(stream, message),
                message.SerializeToString(),
                headers={
                    "Nats-Msg-Id": message.header.change_id,
                    "Cohortflow-Type": message.DESCRIPTOR.full_name,
                },
            )
        )
    await js.publish_async_completed()
    return started


async def _publish_steady(
    js, stream: ChangeStreamSettings, messages: list, rate: int
) -> dict[str, float]:
    """`rate` changes per second in 10 ms slices; change id -> publish time."""
    published: dict[str, float] = {}
    per_slice = max(1, rate // 100)
    start = time.monotonic()
    for n in range(0, len(messages), per_slice):
        due = start + n / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        for message in messages[n : n + per_slice]:
            published[message.header.change_id] = time.time()
            await js.publish(
                subject_of(stream, message),
                message.SerializeToString(),
                headers={
                    "Nats-Msg-Id": message.header.change_id,
                    "Cohortflow-Type": message.DESCRIPTOR.full_name,
                },
            )
    return published


async def _baseline(nats_url: str, database_url: str, count: int) -> float:
    """Bare consumer: fetch 256, insert a row each in one transaction, ack each."""
    stream = unique_stream()
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await ensure_change_stream(js, stream)
        await _publish_burst(js, stream, _messages("base", count))
        sub = await js.pull_subscribe(
            f"{stream.subject_prefix}.>",
            durable="baseline",
            stream=stream.stream,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT),
        )
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            await conn.execute("CREATE TABLE bench_seen (change_id text PRIMARY KEY, subject text)")
            await conn.commit()
            done = 0
            started = time.perf_counter()
            while done < count:
                msgs = await sub.fetch(256, timeout=5)
                async with conn.cursor() as cur:
                    await cur.executemany(
                        "INSERT INTO bench_seen VALUES (%s, %s) ON CONFLICT DO NOTHING",
                        [(m.headers["Nats-Msg-Id"], m.subject) for m in msgs],
                    )
                await conn.commit()
                for m in msgs:
                    await m.ack()
                done += len(msgs)
            return count / (time.perf_counter() - started)
    finally:
        await nc.close()


async def _measure(report: Report, database_url: str, nats_url: str, workdir: Path, heavy: bool):
    burst = 100_000 if heavy else 20_000
    steady_s = 60 if heavy else 20
    baseline = await _baseline(nats_url, database_url, burst)
    report.add(
        Row(
            NAME,
            "baseline: bare pull consumer, fetch 256 + 1 row each + ack",
            {"changes/s": baseline},
            "no campaign logic: the floor of consume, record, ack",
        )
    )
    await asyncio.to_thread(_load_profiles, database_url)
    stream = unique_stream()
    env, address = campaign_env(database_url, nats_url, stream, LOG_LEVEL="WARNING")
    service = ServiceProcess("services.campaign", env, workdir)
    nc = await nats.connect(nats_url)
    try:
        await asyncio.to_thread(service.wait_healthy, address)
        async with grpc.aio.insecure_channel(address) as channel:
            stub = campaigns_pb2_grpc.CampaignServiceStub(channel)
            await stub.CreateCampaign(
                pb.CreateCampaignRequest(
                    campaign=campaign(segment_id="active", body="Hi {{ user.first_name }}")
                ),
                metadata=auth("key-shop"),
            )
        js = nc.jetstream()
        await ensure_change_stream(js, stream)
        # Warm up (connections, caches), outside the timed runs.
        await _publish_burst(js, stream, _messages("warm", 500))
        await wait_sent(database_url, "warm", 500, 60)

        run = uuid.uuid4().hex[:6]
        started = await _publish_burst(js, stream, _messages(f"burst{run}", burst))
        sent = await wait_sent(database_url, f"burst{run}", burst, 600)
        elapsed = max(sent.values()) - started
        report.add(
            Row(
                NAME,
                f"in-app sends, burst of {burst:,} changes",
                {
                    "sends/s": len(sent) / elapsed,
                    "vs baseline": len(sent) / elapsed / baseline,
                    "sent": len(sent),
                },
                "first publish to last send; one campaign, personalised from the profile",
            )
        )

        prefix = f"steady{run}"
        published = await _publish_steady(
            js, stream, _messages(prefix, STEADY_RATE * steady_s), STEADY_RATE
        )
        sent = await wait_sent(database_url, prefix, len(published), 120)
        latencies = [sent[c] - t for c, t in published.items() if c in sent]
        report.add(
            Row(
                NAME,
                f"change published -> in-app delivered, steady {STEADY_RATE:,}/s for {steady_s} s",
                {
                    "p50 ms": percentile(latencies, 50) * 1e3,
                    "p99 ms": percentile(latencies, 99) * 1e3,
                    "max ms": max(latencies) * 1e3,
                    "delivered": len(latencies),
                    "published": len(published),
                },
                "goal: p99 < 500 ms at 1k triggering changes/s",
            )
        )
    finally:
        await nc.close()
        service.terminate()


def run(report: Report, database_url: str, workdir: Path, heavy: bool = False) -> None:
    servers = NatsForTests(workdir / "campaign-nats")
    try:
        asyncio.run(_measure(report, database_url, servers.url, workdir, heavy))
        with sibling_database(database_url, "pipeline") as fresh:
            pipeline.run(report, fresh, servers.url, workdir, heavy)
    finally:
        servers.close()
