"""`make run` on a fresh machine: embedded servers, a dev key, data kept across restarts."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from services.devstack.embedded import free_port
from tests.support.ingest import ACCEPTED, DUPLICATE, IngestClient, event
from tests.support.processes import REPO

pytestmark = pytest.mark.e2e


def run_stack(var: Path) -> tuple[subprocess.Popen, str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "NATS_URL")}
    process = subprocess.Popen(
        [sys.executable, "-m", "services.devstack", "run", "--var", str(var)],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 90
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("Ctrl-C stops everything"):
            text = "".join(lines)
            key = re.search(r"api key\s+(\S+)", text)
            ingest = re.search(r"ingest\s+(127\.0\.0\.1:\d+)", text)
            assert key and ingest, text
            return process, ingest.group(1), key.group(1)
    process.kill()
    raise AssertionError("stack did not start:\n" + "".join(lines))


def stop_stack(process: subprocess.Popen) -> str:
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=60)
    return rest


async def test_run_starts_embedded_servers_and_keeps_data(tmp_path: Path) -> None:
    var = tmp_path / "var"
    ev = event("App Opened")
    process, address, key = run_stack(var)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            first = await IngestClient(channel, key).track(ev)
        assert first.status == ACCEPTED
    finally:
        tail = stop_stack(process)
    assert process.returncode == 0, tail
    assert "stopped." in tail
    ports = json.loads((var / "ports.json").read_text())
    assert ports["postgres"] and ports["nats"]

    process, address, key_again = run_stack(var)
    try:
        assert key_again == key
        async with grpc.aio.insecure_channel(address) as channel:
            again = await IngestClient(channel, key).track(ev)
        assert again.status == DUPLICATE and again.position == first.position
    finally:
        stop_stack(process)
    assert process.returncode == 0


def test_demo_starts_the_suite_runs_the_demo_once_and_stops_it_all(tmp_path: Path) -> None:
    var = tmp_path / "var"
    var.mkdir()
    # Ports of its own, not the defaults a `make run` on this machine may be using.
    names = ("postgres", "nats", "ingest", "projector", "campaign")
    names += tuple(f"{n}_metrics" for n in names[2:])
    (var / "ports.json").write_text(json.dumps({n: free_port() for n in names}))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "NATS_URL")}
    args = ["--once", "--users", "40", "--days", "30", "--speed", "0"]
    done = subprocess.run(
        [sys.executable, "-m", "services.devstack", "demo", "--var", str(var), *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    log = var / "services.log"
    assert done.returncode == 0, done.stdout + done.stderr + log.read_text()[-3000:]
    assert "segment cart-abandoners: created (version 1)" in done.stdout
    assert "cohortflow demo: settled" in done.stdout
    assert re.search(r"^lifecycle: .*\(total 40\)$", done.stdout, re.M), done.stdout
    assert done.stdout.rstrip().endswith("`make demo` again goes on from it.")
    # The services logged to a file of their own; every one of them stopped.
    assert log.read_text().count("stopped") >= 3, log.read_text()[-2000:]
    ports = json.loads((var / "ports.json").read_text())
    for name in ("postgres", "nats", "ingest", "projector", "campaign"):
        with (
            pytest.raises(ConnectionRefusedError),
            socket.create_connection(("127.0.0.1", ports[name]), 1),
        ):
            pass
