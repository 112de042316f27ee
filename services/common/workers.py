"""Run a gRPC service as N worker processes sharing one port (SO_REUSEPORT).

Python serves one core per process; several workers let one ingest node use
every core. The supervisor (this module) picks the port, starts the workers
with PROMETHEUS_MULTIPROC_DIR set, serves their aggregated metrics, forwards
SIGTERM/SIGINT and stops with them. A worker that dies is restarted.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from services.common.net import free_port


def supervise(
    module: str,
    workers: int,
    listen: str,
    listen_env: str,
    metrics_env: str,
    workers_env: str,
    metrics_host: str,
    metrics_port: int,
) -> int:
    host, _, port_text = listen.rpartition(":")
    port = int(port_text) or free_port(0, host or "127.0.0.1")
    metrics_dir = tempfile.mkdtemp(prefix=f"{module.rsplit('.', 1)[-1]}-metrics-")
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
        listen_env: f"{host}:{port}",
        metrics_env: "0",
        workers_env: "1",
        "COHORTFLOW_REUSE_PORT": "1",
    }
    stopping = threading.Event()

    def spawn(index: int) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", module], env={**env, "COHORTFLOW_WORKER_INDEX": str(index)}
        )

    children = [spawn(i) for i in range(workers)]
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    if metrics_port:
        from prometheus_client import CollectorRegistry, multiprocess, start_http_server

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=metrics_dir)
        start_http_server(metrics_port, addr=metrics_host, registry=registry)
    print(
        f"{module}: {workers} workers on {host}:{port}, metrics on {metrics_port or 'none'}",
        file=sys.stderr,
        flush=True,
    )
    try:
        while not stopping.wait(0.5):
            for index, child in enumerate(children):
                if child.poll() is not None:
                    print(
                        f"{module}: worker {index} exited with {child.returncode}; restarting",
                        file=sys.stderr,
                        flush=True,
                    )
                    _forget_gauges(child.pid, metrics_dir)
                    time.sleep(1)
                    children[index] = spawn(index)
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(60)
            except subprocess.TimeoutExpired:
                child.kill()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _forget_gauges(pid: int, metrics_dir: str) -> None:
    """Drop a dead worker's "live" gauges (readiness checks), so its last value does not
    stand for the workers that run."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, metrics_dir)
