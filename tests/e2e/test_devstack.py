"""`make run` on a fresh machine: embedded servers, a dev key, data kept across restarts."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

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
