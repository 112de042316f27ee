"""A three-server NATS cluster on loopback whose servers a test can SIGKILL and restart.

Each server keeps its ports and its JetStream store across a restart, as a pod of a
StatefulSet does, so a restarted server rejoins the cluster and catches up on its
streams. The leader of a stream is read from JetStream's stream info.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import nats
from nats.js.api import StreamInfo

from tests.support.nats_cluster import NatsCluster


class FaultyNatsCluster(NatsCluster):
    def urls(self) -> list[str]:
        """Client URLs of the servers that run now."""
        return [s.url for s in self.servers if s.process is not None]

    def kill(self, index: int) -> None:
        """SIGKILL one server: no lame duck mode, no leadership handed over."""
        process = self.servers[index].process
        assert process is not None, f"server {index} is not running"
        process.kill()
        process.wait()
        self.servers[index].process = None

    def restart(self, index: int) -> None:
        """Start a killed server again on its ports, with its store."""
        self.servers[index].start()

    def index_of(self, name: str) -> int:
        return next(i for i, s in enumerate(self.servers) if s.name == name)

    async def stream_info(self, stream: str) -> StreamInfo:
        nc = await nats.connect(self.urls(), connect_timeout=2, max_reconnect_attempts=2)
        try:
            return await nc.jetstream(timeout=3).stream_info(stream)
        finally:
            await nc.close()

    async def messages(self, stream: str, within: float = 60.0) -> int:
        """How many messages `stream` holds, once some server answers."""
        info = await self._until(stream, lambda info: True, within)
        return int(info.state.messages)

    async def leader(self, stream: str, *, other_than: int = -1, within: float = 60.0) -> int:
        """Index of the server leading `stream`, once it has one (other than `other_than`:
        a killed leader is still named until the others have elected a new one)."""

        def elected(info: StreamInfo) -> bool:
            name = info.cluster.leader if info.cluster else None
            return bool(name) and self.index_of(name or "") != other_than

        info = await self._until(stream, elected, within)
        assert info.cluster is not None and info.cluster.leader
        return self.index_of(info.cluster.leader)

    async def wait_replicated(self, stream: str, within: float = 120.0) -> StreamInfo:
        """Until `stream` has a leader and every other server is a current replica."""

        def replicated(info: StreamInfo) -> bool:
            cluster = info.cluster
            if cluster is None or not cluster.leader:
                return False
            peers = cluster.replicas or []
            return len(peers) == len(self.servers) - 1 and all(
                p.current and not p.offline for p in peers
            )

        return await self._until(stream, replicated, within)

    async def _until(
        self, stream: str, done: Callable[[StreamInfo], bool], within: float
    ) -> StreamInfo:
        deadline = time.monotonic() + within
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                info = await self.stream_info(stream)
                if done(info):
                    return info
            except Exception as error:  # no quorum yet, a server still starting
                last = error
            await asyncio.sleep(0.25)
        msg = f"stream {stream} did not get there within {within:.0f} s (last error: {last!r})"
        raise AssertionError(msg)
