"""Services killed and started again by the test, as a supervisor would (Kubernetes,
compose's `restart: always`): SIGKILL, then the same command on the same address.

`SupervisedPipeline` is `Pipeline` (ingest, projector, campaign as processes) with
each of the three killable and restartable by name; `restart` waits until the new
process answers gRPC health SERVING and returns how long that took.
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg

from tests.support.pipeline import Pipeline
from tests.support.processes import ServiceProcess

SERVICES = ("ingest", "projector", "campaign")


class SupervisedPipeline(Pipeline):
    def start(self) -> None:
        """Start the three at once (imports overlap), then wait until each is healthy."""
        self.running: dict[str, ServiceProcess] = {}
        for name in SERVICES:
            self.running[name] = self._spawn(self.module(name), self.env(name))
        for name in SERVICES:
            self.running[name].wait_healthy(self.address(name), timeout=60)
        self.campaign = self.running["campaign"]

    def module(self, name: str) -> str:
        return f"services.{name}"

    def env(self, name: str) -> dict[str, str]:
        env: dict[str, str] = getattr(self, f"{name}_env")
        return env

    def address(self, name: str) -> str:
        address: str = getattr(self, f"{name}_address")
        return address

    def kill(self, name: str) -> None:
        """SIGKILL: no drain, nothing flushed, connections dropped mid-call."""
        self.running[name].kill()

    def stop_service(self, name: str) -> int:
        """SIGTERM one service (it drains and finishes its work); its exit code."""
        return self.running[name].terminate(timeout=60)

    def restart(self, name: str, timeout: float = 120.0) -> float:
        """Start `name` again as it was; seconds until it answers health SERVING."""
        started = time.monotonic()
        process = self._spawn(self.module(name), self.env(name))
        self.running[name] = process
        if name == "campaign":
            self.campaign = process
        process.wait_healthy(self.address(name), timeout=timeout)
        return time.monotonic() - started


class SupervisedProcess:
    """One service as a process that can be killed and started again on its address."""

    def __init__(self, module: str, env: dict[str, str], address: str, workdir: Path) -> None:
        self.module, self.env, self.address, self.workdir = module, env, address, workdir
        self.spawned: list[ServiceProcess] = []

    @property
    def current(self) -> ServiceProcess:
        return self.spawned[-1]

    def start(self) -> float:
        """Start it (again); seconds until it answers health SERVING."""
        started = time.monotonic()
        self.spawned.append(ServiceProcess(self.module, self.env, self.workdir))
        self.current.wait_healthy(self.address, timeout=120)
        return time.monotonic() - started

    def kill(self) -> None:
        self.current.kill()

    def close(self) -> None:
        for process in self.spawned:
            process.kill()


def terminate_connections(database_url: str) -> int:
    """`pg_terminate_backend` every other connection to this test's own database; how many.

    Only the database named in `database_url` (each test has its own), never another's.
    """
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return sum(1 for (done,) in rows if done)
