"""deploy/nats/nats-server.conf: accepted by the nats-server we ship, fsyncs every write."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from services.devstack.embedded import nats_server_binary
from tests.unit.deploy.manifests import NATS_CONF


def _check(path: Path, server_name: str | None = "nats-0") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SERVER_NAME"}
    if server_name:
        env["SERVER_NAME"] = server_name
    return subprocess.run(
        [nats_server_binary(), "-t", "-c", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )


def _jetstream_block(text: str) -> str:
    match = re.search(r"^jetstream\s*\{(.*?)^\}", text, re.S | re.M)
    assert match, "no jetstream block"
    return match.group(1)


def test_config_is_valid_for_nats_server() -> None:
    result = _check(NATS_CONF)
    assert result.returncode == 0, result.stderr


def test_config_needs_the_server_name_from_the_environment() -> None:
    result = _check(NATS_CONF, server_name=None)
    assert result.returncode != 0
    assert "SERVER_NAME" in result.stderr


def test_jetstream_fsyncs_every_write() -> None:
    settings = [
        line.split("#", 1)[0].strip()
        for line in _jetstream_block(NATS_CONF.read_text()).splitlines()
    ]
    assert "sync_interval: always" in settings


def test_an_unquoted_duration_is_refused(tmp_path: Path) -> None:
    # The earlier config said `sync_interval: 2m`, which nats-server reads as 2,000,000 seconds.
    bad = tmp_path / "bad.conf"
    bad.write_text(NATS_CONF.read_text().replace("sync_interval: always", "sync_interval: 2m"))
    result = _check(bad)
    assert result.returncode != 0
    assert "sync_interval" in result.stderr
