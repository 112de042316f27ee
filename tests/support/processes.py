"""Run services as real processes for end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.devstack.embedded import free_port

REPO = Path(__file__).resolve().parents[2]


def rebuild(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m services.projector.rebuild ARGS` on a database, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "services.projector.rebuild", *args],
        env={"DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


class ServiceProcess:
    """`python -m <module>` with the given environment, output captured to a file."""

    def __init__(self, module: str, env: dict[str, str], log_dir: Path) -> None:
        self.module = module
        self.log_path = log_dir / f"{module.rsplit('.', 1)[-1]}-{time.monotonic_ns()}.log"
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", module],
            env={**os.environ, "LOG_FORMAT": "json", "LOG_LEVEL": "DEBUG", **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, address: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    msg = f"{self.module} exited early:\n{self.output()}"
                    raise RuntimeError(msg)
                try:
                    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
        msg = f"{self.module} not healthy after {timeout}s:\n{self.output()}"
        raise TimeoutError(msg)

    def terminate(self, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def ingest_env(database_url: str, keys: str) -> tuple[dict[str, str], str, int]:
    """Environment for an ingest process on free ports; (env, address, metrics port).

    Its HTTP tracking API listens on `env["INGEST_HTTP_LISTEN"]`."""
    port, metrics = free_port(), free_port()
    env = {
        "DATABASE_URL": database_url,
        "COHORTFLOW_API_KEYS": keys,
        "INGEST_LISTEN": f"127.0.0.1:{port}",
        "INGEST_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
        "INGEST_METRICS_PORT": str(metrics),
    }
    return env, f"127.0.0.1:{port}", metrics
