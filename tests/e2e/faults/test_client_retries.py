"""The shipped clients ride out an ingest restart: they retry with the same event ids.

Ingest is killed with SIGKILL while the simulator sends (calls in flight are cut,
later ones find nobody listening) and started again on the same address, as a
supervisor would. The simulator must finish with every call answered (none failed,
none rejected) and the log must hold every simulated event exactly once: calls cut
mid-way were sent again with the same ids and answered DUPLICATE if they had been
stored.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.cli.simulator import SimulationConfig, run_simulation
from tests.support.processes import ServiceProcess, ingest_env
from tests.support.simulated import simulated_ids, stored_id_counts
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e
# How long ingest stays away: a few calls of the simulator (6 a second) meet a closed port.
OUTAGE_S = 1.5


async def test_the_simulator_keeps_going_across_an_ingest_restart(
    database_url: str, tmp_path: Path
) -> None:
    env, address, _ = ingest_env(database_url, "shop:key-shop")
    env["INGEST_METRICS_PORT"] = "0"
    ingest = ServiceProcess("services.ingest", env, tmp_path)
    restarted: ServiceProcess | None = None
    now = datetime.now(UTC)
    config = SimulationConfig(users=150, days=7, seed=41, speed=0, rate=300, batch_size=50)
    expected = simulated_ids(config, now)
    acks: list[float] = []
    try:
        await asyncio.to_thread(ingest.wait_healthy, address)
        simulation = asyncio.create_task(
            run_simulation(
                config,
                address,
                "key-shop",
                now=now,
                on_accepted=lambda ids, at: acks.append(at),
            )
        )

        async def some_calls_answered() -> bool:
            return len(acks) >= 10 or simulation.done()

        await eventually(some_calls_answered, "the first calls answered")
        ingest.kill()
        acked_before_kill = len(acks)
        await asyncio.sleep(OUTAGE_S)
        restarted = ServiceProcess("services.ingest", env, tmp_path)
        await asyncio.to_thread(restarted.wait_healthy, address)
        back_at = time.time()
        summary = await asyncio.wait_for(simulation, timeout=240)
        assert restarted.terminate() == 0, restarted.output()
    finally:
        ingest.kill()
        if restarted is not None:
            restarted.kill()

    assert not simulation.cancelled()
    assert acked_before_kill < len(acks), "the kill came after the last call"
    assert any(at >= back_at for at in acks), "nothing was sent after the restart"
    # Every call was answered, every event has a result: none failed, none rejected.
    assert summary.rejected == 0, summary.rejections
    assert summary.accepted + summary.duplicate == summary.sent
    # The log holds each simulated event once: none lost, none doubled.
    stored = await asyncio.to_thread(stored_id_counts, database_url)
    assert set(stored) == expected
    assert set(stored.values()) == {1}
