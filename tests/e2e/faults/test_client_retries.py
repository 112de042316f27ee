"""The shipped clients ride out an ingest restart: they retry with the same event ids.

Ingest is killed with SIGKILL while a client sends (calls in flight are cut, later
ones find nobody listening) and started again on the same address, as a supervisor
would. The simulator and `cohortflow import` must finish with every call answered
(none failed, none rejected) and the log must hold every event exactly once: calls cut
mid-way were sent again with the same ids and answered DUPLICATE if they had been
stored.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from services.cli.simulator import SimulationConfig, run_simulation
from tests.support.cli import COMMAND, summary_of
from tests.support.processes import ingest_env
from tests.support.simulated import simulated_ids, stored_id_counts
from tests.support.supervisor import SupervisedProcess
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e
# How long ingest stays away: several calls of the client meet a closed port.
OUTAGE_S = 1.5


@pytest.fixture
def ingest(database_url: str, tmp_path: Path) -> Iterator[SupervisedProcess]:
    env, address, _ = ingest_env(database_url, "shop:key-shop")
    env["INGEST_METRICS_PORT"] = "0"
    process = SupervisedProcess("services.ingest", env, address, tmp_path)
    process.start()
    yield process
    process.close()


async def _restart_when(ingest: SupervisedProcess, ready: Callable[[], Awaitable[bool]]) -> float:
    """Kill ingest once `ready()`, keep it away for OUTAGE_S, start it again; the time
    (wall clock) of the kill. Nothing can be acknowledged while it is away, so an ack after
    that time was given by the restarted ingest (even one given before `start` returned)."""
    await eventually(ready, "the client under way")
    killed_at = time.time()
    ingest.kill()
    await asyncio.sleep(OUTAGE_S)
    await asyncio.to_thread(ingest.start)
    return killed_at


def _stored(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM cohortflow_events").fetchone()
    return int(row[0]) if row else 0


async def test_the_simulator_keeps_going_across_an_ingest_restart(
    ingest: SupervisedProcess, database_url: str
) -> None:
    now = datetime.now(UTC)
    config = SimulationConfig(users=150, days=7, seed=41, speed=0, rate=300, batch_size=50)
    acks: list[float] = []
    simulation = asyncio.create_task(
        run_simulation(
            config, ingest.address, "key-shop", now=now, on_accepted=lambda _, at: acks.append(at)
        )
    )

    async def under_way() -> bool:
        assert not simulation.done(), "the simulation ended before the kill"
        return len(acks) >= 10

    killed_at = await _restart_when(ingest, under_way)
    summary = await asyncio.wait_for(simulation, timeout=240)
    assert ingest.current.terminate() == 0, ingest.current.output()

    assert any(at > killed_at for at in acks), "nothing was sent after the restart"
    # Every call was answered, every event has a result: none failed, none rejected.
    assert summary.rejected == 0, summary.rejections
    assert summary.accepted + summary.duplicate == summary.sent
    # The log holds each simulated event once: none lost, none doubled.
    stored = await asyncio.to_thread(stored_id_counts, database_url)
    assert set(stored) == simulated_ids(config, now)
    assert set(stored.values()) == {1}


async def test_an_import_keeps_going_across_an_ingest_restart(
    ingest: SupervisedProcess, database_url: str, tmp_path: Path
) -> None:
    ids = [f"imp-{n}" for n in range(3000)]
    path = tmp_path / "events.jsonl"
    path.write_text(
        "".join(
            json.dumps({"event_id": i, "user_id": f"u{n % 300}", "name": "App Opened"}) + "\n"
            for n, i in enumerate(ids)
        )
    )
    # Small calls, one at a time, so the import is still going when ingest dies.
    client = await asyncio.create_subprocess_exec(
        *COMMAND,
        "import",
        str(path),
        "--batch-size",
        "10",
        "--concurrency",
        "1",
        env={**os.environ, "COHORTFLOW_INGEST": ingest.address, "COHORTFLOW_API_KEY": "key-shop"},
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:

        async def under_way() -> bool:
            assert client.returncode is None, "the import ended before the kill"
            return await asyncio.to_thread(_stored, database_url) >= 300

        await _restart_when(ingest, under_way)
        output = await asyncio.wait_for(client.communicate(), timeout=240)
    finally:
        if client.returncode is None:
            client.kill()
    out, err = (part.decode() for part in output)
    result = subprocess.CompletedProcess(COMMAND, client.returncode, out, err)
    assert result.returncode == 0, out + err
    counts = summary_of(result)
    assert counts["read"] == len(ids)
    assert counts["accepted"] + counts["duplicate"] == len(ids)
    assert (counts["rejected"], counts["unreadable"]) == (0, 0)
    stored = await asyncio.to_thread(stored_id_counts, database_url)
    assert set(stored) == set(ids)
    assert set(stored.values()) == {1}
