"""With NATS down, changes wait in the outbox; when it returns they go out in order,
none lost, none doubled."""

from __future__ import annotations

import asyncio
from pathlib import Path

from services.common.grpc.auth import ApiKeys
from services.devstack.embedded import EmbeddedNats
from services.eventlog.store import open_event_log
from services.projector.adapters.outbox import OutboxQueries
from services.projector.bootstrap import start_projector
from services.projector.config import ProjectorSettings
from tests.support.changes import read_all, unique_streams
from tests.support.logevents import T0, track


async def test_changes_wait_for_nats_and_go_out_in_order(database_url: str, tmp_path: Path) -> None:
    nats = EmbeddedNats(tmp_path / "nats")
    nats.start()
    port = nats.port
    streams = unique_streams()
    settings = ProjectorSettings(
        DATABASE_URL=database_url,
        NATS_URL=nats.url,
        PROJECTOR_LISTEN="127.0.0.1:0",
        PROJECTOR_TICK_INTERVAL_S=0,
        PROJECTOR_RELAY_ACK_TIMEOUT_S=1,
    )
    log = open_event_log(database_url)
    app = await start_projector(settings, ApiKeys([]), streams=streams)
    try:
        log.append_new([log.encode(track(f"u{i}", T0 + i)) for i in range(5)])
        await read_all(nats.url, streams, expect=5)
        nats.stop()  # NATS goes away
        positions = []
        for batch in range(4):
            outcome = log.append_new(
                [log.encode(track(f"v{batch}-{i}", T0 + 1000 + i)) for i in range(50)]
            )
            positions.append(max(outcome.inserted.values()))
        deadline = asyncio.get_running_loop().time() + 20
        while app.projection.position < positions[-1]:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        assert OutboxQueries(app.store).depth() == 200  # committed, waiting for NATS
        nats = EmbeddedNats(tmp_path / "nats", port)  # back, same data
        nats.start()
        received = await read_all(nats.url, streams, expect=205, within=60)
        ids = [r.msg_id for r in received]
        assert len(ids) == 205 and len(set(ids)) == 205
        users = [r.header.user_id for r in received]
        assert users[:5] == [f"u{i}" for i in range(5)]
        # In commit order (which is log order here).
        assert [r.header.position for r in received] == sorted(r.header.position for r in received)
        assert OutboxQueries(app.store).depth() == 0
    finally:
        await app.stop(1)
        log.close()
        nats.stop()
