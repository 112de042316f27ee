"""`make run` with PROJECTOR_WORKERS=2 and COHORTFLOW_PARTITIONS=4: two projector processes
share the four partitions of the dev database, and the suite answers as with one."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cohortflow.profiles.v1 import profiles_pb2, profiles_pb2_grpc

from services.devstack.embedded import free_port
from tests.e2e.test_devstack import _own_environment, start_until_running
from tests.support.ingest import ACCEPTED, IngestClient, auth, event
from tests.support.metrics_scrape import held_partitions
from tests.support.processes import REPO
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


def _fresh_ports(var: Path) -> None:
    """Ports of its own, not the defaults a `make run` on this machine may be using."""
    var.mkdir()
    names = ["postgres", "nats", "ingest", "ingest_http", "projector", "campaign", "console"]
    names += [f"{n}_metrics" for n in ("ingest", "projector", "campaign", "console")]
    (var / "ports.json").write_text(json.dumps({n: free_port() for n in names}))


@pytest.fixture
def var() -> Iterator[Path]:
    """The stack's folder, outside pytest's temp root: every pytest start (another run on
    this machine too) makes that root private again, and the embedded PostgreSQL runs as a
    user of its own that must reach its data."""
    folder = Path(tempfile.mkdtemp(prefix="cohortflow-devstack-"))
    yield folder / "var"
    shutil.rmtree(folder, ignore_errors=True)


async def test_two_projector_processes_share_the_partitions_of_make_run(var: Path) -> None:
    _fresh_ports(var)
    env = _own_environment(PROJECTOR_WORKERS="2", COHORTFLOW_PARTITIONS="4")
    command = ["make", "--no-print-directory", "run", f"RUN_ARGS=--var {var}"]
    process, text = start_until_running(command, env)
    try:
        assert re.search(r"^  partitions +4 +\(COHORTFLOW_PARTITIONS\)", text, re.M), text
        ports = json.loads((var / "ports.json").read_text())
        first, second = ports["projector_metrics"], ports["projector-2_metrics"]
        assert re.search(rf"^  projector-2 +127\.0\.0\.1:{ports['projector-2']} ", text, re.M)
        assert ports["projector-2"] != ports["projector"]

        async def shared() -> bool:
            one, two = await asyncio.gather(
                asyncio.to_thread(held_partitions, first),
                asyncio.to_thread(held_partitions, second),
            )
            return len(one) == 2 and len(two) == 2 and one | two == {0, 1, 2, 3}

        await eventually(shared, "both projector processes holding two partitions each")

        key = (var / "dev-api-key").read_text().strip()
        users = [f"user-{n}" for n in range(12)]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{ports['ingest']}") as channel:
            ingest = IngestClient(channel, key)
            tracked = {u: await ingest.track(event("App Opened", user_id=u)) for u in users}
        assert all(r.status == ACCEPTED for r in tracked.values())
        # Positions name their partition: the users landed in more than one.
        assert len({r.position >> 48 for r in tracked.values()}) > 1
        async with grpc.aio.insecure_channel(f"127.0.0.1:{ports['projector']}") as channel:
            profiles = profiles_pb2_grpc.ProfileServiceStub(channel)
            for user, result in tracked.items():
                ask = profiles_pb2.GetProfileRequest(user_id=user, min_position=result.position)
                reply = await profiles.GetProfile(ask, metadata=auth(key))
                assert reply.profile.user_id == user
    finally:
        # Ctrl-C, as a terminal sends it: to the whole process group of `make run`.
        os.killpg(process.pid, signal.SIGINT)
        tail, _ = process.communicate(timeout=60)
    assert "stopped." in tail, tail

    # The number of partitions is the dev database's: another one is refused, naming both.
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.devstack", "run", "--var", str(var)],
        env=_own_environment(COHORTFLOW_PARTITIONS="2"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "COHORTFLOW_PARTITIONS=2, but this deployment was created with 4" in done.stderr
