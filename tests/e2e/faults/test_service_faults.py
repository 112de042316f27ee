"""Every service killed with SIGKILL, and every database connection cut, under load.

ingest, projector and campaign run as processes while the simulator sends its
population through ingest. Each service in turn is killed with SIGKILL and started
again at once, as a supervisor would; then killed again as soon as it serves, while it
catches up (the soak run's worst case); then every connection to the database is
terminated (`pg_terminate_backend`), twice. After each fault the suite must make
progress again by itself: events accepted, changes published, triggers acted on.

Afterwards nothing was lost or doubled: every simulated event is in the log once
(the simulator retried calls cut by the kills with the same ids), every change is
on the stream once with gapless per-user sequences, the stream equals a replay of the
log, and campaign decided each trigger once; a webhook call cut by a kill may be
repeated once with the same idempotency key, at most CAMPAIGN_DISPATCH_CONCURRENCY of
them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from services.cli.simulator import SimulationConfig
from tests.support import fault_suite as suite
from tests.support.infra import NatsForTests
from tests.support.receivers import HttpReceiver
from tests.support.supervisor import terminate_connections

pytestmark = pytest.mark.e2e
# One population after another (about 1,600 events each) until the faults are over.
LOAD = SimulationConfig(users=150, days=14, seed=1602, speed=0, rate=150, batch_size=50)
DISPATCH_CONCURRENCY = 32  # CAMPAIGN_DISPATCH_CONCURRENCY's default


async def test_services_killed_and_database_connections_cut_under_load(
    database_url: str, nats_server: NatsForTests, tmp_path: Path, webhook: HttpReceiver
) -> None:
    pipeline = suite.faulty_pipeline(database_url, nats_server.url, tmp_path)
    load = suite.Load(pipeline.ingest_address, LOAD)
    decided = suite.decided_count(database_url)

    async def accepted() -> int:
        return load.acked

    async def published() -> int:
        return await suite.stream_messages(nats_server.url, pipeline.streams.stream)

    # What must move again after each service comes back.
    progress = {"ingest": accepted, "projector": published, "campaign": decided}
    figures: dict[str, float] = {}
    try:
        await asyncio.to_thread(pipeline.start)
        triggers = await suite.define_campaigns(pipeline, webhook)
        load.start()
        for name in ("ingest", "projector", "campaign"):
            await load.reach(load.acked + 300)
            for attempt in ("killed", "killed again while catching up"):
                pipeline.kill(name)
                figures[f"{name} {attempt}: serving"] = await asyncio.to_thread(
                    pipeline.restart, name
                )
            figures[f"{name}: progressing"] = await suite.resumed(
                progress[name], f"{name} progressing"
            )
        for round in (1, 2):
            await load.reach(load.acked + 300)
            cut = await asyncio.to_thread(terminate_connections, database_url)
            assert cut > 0, "no connections cut"
            for what, probe in (("accepted", accepted), ("published", published)):
                figures[f"connections cut #{round}: {what}"] = await suite.resumed(probe, what)
            figures[f"connections cut #{round}: decided"] = await suite.resumed(decided, "decided")

        counted = await suite.finish_and_verify(
            pipeline,
            load,
            nats_server.url,
            triggers,
            webhook,
            repeated_calls_allowed=DISPATCH_CONCURRENCY,
        )
        print(f"counted: {counted}")
    finally:
        print(f"seconds: {figures}")
        await pipeline.close()
