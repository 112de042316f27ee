"""The NATS that `make run` starts fsyncs every JetStream write (as deploy/nats does)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from services.devstack.embedded import EmbeddedNats, free_port


def _jetstream_config(nats: EmbeddedNats) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{nats.http_port}/varz", timeout=5) as reply:
        return json.load(reply)["jetstream"]["config"]


@pytest.mark.parametrize("sync_always", [True, False])
def test_embedded_nats_syncs_as_configured(tmp_path: Path, sync_always: bool) -> None:
    nats = EmbeddedNats(tmp_path / "nats", sync_always=sync_always, http_port=free_port())
    nats.start()
    try:
        config = _jetstream_config(nats)
    finally:
        nats.stop()
    assert config.get("sync_always", False) is sync_always
    assert config["store_dir"] == str(tmp_path.resolve() / "nats" / "jetstream")


def test_make_run_default_is_sync_always(tmp_path: Path) -> None:
    assert EmbeddedNats(tmp_path).sync_always is True
