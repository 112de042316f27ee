"""The NATS that `make run` starts fsyncs every JetStream write (as deploy/nats does);
three embedded servers form a JetStream cluster."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import nats
import pytest

from services.common.jetstream import MSG_ID_HEADER, ChangeStreamSettings, ensure_change_stream
from services.devstack.embedded import EmbeddedNats, free_port
from tests.support.nats_cluster import NatsCluster


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


async def test_three_embedded_servers_form_a_cluster_that_holds_an_r3_stream(
    tmp_path: Path,
) -> None:
    cluster = NatsCluster(tmp_path / "cluster")
    await asyncio.to_thread(cluster.start)
    try:
        nc = await nats.connect(cluster.url)
        js = nc.jetstream()
        settings = ChangeStreamSettings(
            CHANGES_STREAM="R3_TEST", CHANGES_SUBJECT_PREFIX="r3test", CHANGES_REPLICAS=3
        )
        await ensure_change_stream(js, settings)
        ack = await js.publish("r3test.app.lifecycle", b"x", headers={MSG_ID_HEADER: "c1"})
        info = await js.stream_info("R3_TEST")
        await nc.close()
    finally:
        await asyncio.to_thread(cluster.stop)
    assert ack.seq == 1
    assert info.config.num_replicas == 3
    assert info.cluster is not None and info.cluster.leader
    assert len(info.cluster.replicas or []) == 2
