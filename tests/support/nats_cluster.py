"""Three NATS servers as a JetStream cluster on loopback (embedded processes), for benches."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nats

from services.common.jetstream import ChangeStreamSettings, ensure_change_stream
from services.devstack.embedded import EmbeddedNats, free_port


class NatsCluster:
    def __init__(self, data_dir: Path, *, size: int = 3, sync_always: bool = True) -> None:
        routes = tuple(free_port() for _ in range(size))
        self.servers = [
            EmbeddedNats(
                data_dir / f"n{i}",
                sync_always=sync_always,
                name=f"n{i}",
                cluster_port=routes[i],
                routes=routes,
            )
            for i in range(size)
        ]

    @property
    def url(self) -> str:
        return self.servers[0].url

    def start(self, timeout: float = 60.0) -> str:
        for server in self.servers:
            server.start()
        asyncio.run(self._wait_for_jetstream(timeout))
        return self.url

    async def _wait_for_jetstream(self, within_s: float) -> None:
        """Until the cluster has a meta leader: a replicated stream can be made."""
        nc = await nats.connect(self.url)
        probe = ChangeStreamSettings(
            CHANGES_STREAM="CLUSTER_PROBE", CHANGES_SUBJECT_PREFIX="probe", CHANGES_REPLICAS=3
        )
        deadline = time.monotonic() + within_s
        try:
            while True:
                try:
                    await ensure_change_stream(nc.jetstream(timeout=2), probe)
                    await nc.jetstream().delete_stream(probe.stream)
                    return
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.5)
        finally:
            await nc.close()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
