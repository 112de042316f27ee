"""`make run` on a fresh machine: embedded servers, a dev key, data kept across restarts;
the documented listen, metrics and key settings honoured."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import grpc
import httpx
import pytest
from cohortflow.campaigns.v1 import campaigns_pb2, campaigns_pb2_grpc
from cohortflow.profiles.v1 import profiles_pb2, profiles_pb2_grpc

from services.devstack.embedded import free_port
from services.devstack.ports import is_free
from tests.support.console import signed_in_at
from tests.support.ingest import ACCEPTED, DUPLICATE, IngestClient, auth, event
from tests.support.processes import REPO

pytestmark = pytest.mark.e2e


def _own_environment(**settings: str) -> dict[str, str]:
    """This environment without the servers or settings a test run may carry, plus `settings`."""
    ours = ("DATABASE_URL", "NATS_URL", "COHORTFLOW_API_KEYS", "COHORTFLOW_API_KEYS_FILE")
    env = {k: v for k, v in os.environ.items() if k not in ours and not k.endswith("_LISTEN")}
    return {**env, **settings}


def start_until_running(command: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """Start `command` in a session of its own (as a terminal would); what it printed up to
    the line that says it runs."""
    process = subprocess.Popen(
        command,
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 120
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("Ctrl-C stops everything"):
            return process, "".join(lines)
    process.kill()
    process.wait()
    raise AssertionError("stack did not start:\n" + "".join(lines))


def run_stack(var: Path) -> tuple[subprocess.Popen, str, str]:
    command = [sys.executable, "-m", "services.devstack", "run", "--var", str(var)]
    process, text = start_until_running(command, _own_environment())
    key = re.search(r"api key\s+(\S+)", text)
    ingest = re.search(r"ingest\s+(127\.0\.0\.1:\d+)", text)
    assert key and ingest, text
    return process, ingest.group(1), key.group(1)


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


def _metrics_answer(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        return reply.status == 200 and b"# HELP" in reply.read()


async def test_make_run_honours_listen_metrics_and_key_settings_for_two_apps(
    tmp_path: Path,
) -> None:
    # The documented settings, on ports nobody else uses, and two apps with keys of ours.
    names = ("ingest", "projector", "campaign", "console")
    listen = {n: free_port() for n in names}
    metrics = {n: free_port() for n in names}
    settings = {f"{n.upper()}_LISTEN": f"127.0.0.1:{listen[n]}" for n in names}
    settings |= {f"{n.upper()}_METRICS_PORT": str(metrics[n]) for n in names}
    settings["COHORTFLOW_API_KEYS"] = "demo:key-demo-e2e,shop:key-shop-e2e"
    http_port = free_port()
    settings["INGEST_HTTP_LISTEN"] = f"127.0.0.1:{http_port}"
    var = tmp_path / "var"
    command = ["make", "--no-print-directory", "run", f"RUN_ARGS=--var {var}"]
    process, text = start_until_running(command, _own_environment(**settings))
    try:
        # It says where everything is, and which setting put it there.
        for n in names:
            variable = f"{n.upper()}_LISTEN"
            shown = f"http://127.0.0.1:{listen[n]}/" if n == "console" else f"127.0.0.1:{listen[n]}"
            assert re.search(rf"^  {n} +{re.escape(shown)} .*\({variable}=", text, re.M), text
            assert f"http://127.0.0.1:{metrics[n]}/metrics" in text
            assert _metrics_answer(metrics[n])
        assert re.search(r"^  apps +demo, shop +\(COHORTFLOW_API_KEYS\)", text, re.M), text
        # The console, and its development user: an editor of both apps.
        console = f"http://127.0.0.1:{listen['console']}"
        password = (var / "dev-console-password").read_text().strip()
        assert re.search(rf"^  console user +dev / {re.escape(password)} ", text, re.M), text
        browser = signed_in_at(console, "dev", password)
        for app in ("demo", "shop"):
            page = browser.get(f"/apps/{app}/segments")
            assert page.status_code == 200 and "dev (editor)" in page.text, app
        browser.close()
        http = f"http://127.0.0.1:{http_port}"
        assert re.search(rf"^  ingest http +{http}/v1/ .*INGEST_HTTP_LISTEN=", text, re.M), text
        assert f"curl -u {(var / 'dev-api-key').read_text().strip()}: " in text
        # The Segment-compatible HTTP API takes shop's write key, as Segment's SDKs send it.
        call = {"userId": "via-http", "event": "App Opened", "messageId": uuid.uuid4().hex}
        async with httpx.AsyncClient(auth=("key-shop-e2e", "")) as client:
            answer = await client.post(f"{http}/v1/track", json=call)
        assert answer.status_code == 200, answer.text

        # An event tracked with shop's key is read back with it, and demo's keys do not see it.
        user = f"buyer-{uuid.uuid4().hex[:8]}"
        async with grpc.aio.insecure_channel(f"127.0.0.1:{listen['ingest']}") as channel:
            tracked = await IngestClient(channel, "key-shop-e2e").track(event(user_id=user))
        assert tracked.status == ACCEPTED
        dev_key = (var / "dev-api-key").read_text().strip()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{listen['projector']}") as channel:
            profiles = profiles_pb2_grpc.ProfileServiceStub(channel)
            ask = profiles_pb2.GetProfileRequest(user_id=user, min_position=tracked.position)
            reply = await profiles.GetProfile(ask, metadata=auth("key-shop-e2e"))
            assert reply.profile.user_id == user
            for other in ("key-demo-e2e", dev_key):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await profiles.GetProfile(ask, metadata=auth(other))
                assert refused.value.code() == grpc.StatusCode.NOT_FOUND
        async with grpc.aio.insecure_channel(f"127.0.0.1:{listen['campaign']}") as channel:
            campaigns = campaigns_pb2_grpc.CampaignServiceStub(channel)
            listed = await campaigns.ListCampaigns(
                campaigns_pb2.ListCampaignsRequest(), metadata=auth("key-shop-e2e")
            )
            assert list(listed.campaigns) == []
    finally:
        # Ctrl-C, as a terminal sends it: to the whole process group of `make run`.
        os.killpg(process.pid, signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
    assert "stopped." in rest, rest
    for port in [*listen.values(), *metrics.values(), http_port]:
        assert is_free("127.0.0.1", port), port


def test_a_setting_that_cannot_be_honoured_is_refused_before_anything_starts(
    tmp_path: Path,
) -> None:
    var = tmp_path / "var"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for settings, says in [
            ({"PROJECTOR_LISTEN": f"127.0.0.1:{port}"}, f"port {port} is in use"),
            ({"CAMPAIGN_METRICS_PORT": "lots"}, "expected a port number (0 disables)"),
            ({"COHORTFLOW_API_KEYS": "shop"}, "entry 1 must look like app_id:key"),
            ({"PROJECTOR_WORKERS": "two"}, "expected a whole number from 1 to 16"),
            ({"COHORTFLOW_PARTITIONS": "0"}, "expected a whole number from 1 to 1024"),
        ]:
            done = subprocess.run(
                [sys.executable, "-m", "services.devstack", "run", "--var", str(var)],
                env=_own_environment(**settings),
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 1, done.stdout + done.stderr
            (variable,) = settings
            assert done.stderr.startswith(f"cohortflow: could not start: {variable}"), done.stderr
            assert says in done.stderr
            assert not (var / "postgres").exists()
