"""A full rebuild from the log reproduces the live change sequence exactly; then swap."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

from services.common.grpc.auth import ApiKeys
from services.eventlog.store import open_event_log
from services.projector.bootstrap import start_projector
from services.projector.config import ProjectorSettings
from tests.support.changes import delete_stream, unique_streams
from tests.support.logevents import HOUR, T0, track
from tests.support.processes import rebuild
from tests.support.segment_history import (
    PROFILE_SEGMENTS,
    SEGMENTS,
    profiled_history,
    save_segments,
)


async def test_rebuild_is_identical_and_swaps_in(database_url: str, nats_server: Any) -> None:
    streams = unique_streams()
    settings = ProjectorSettings(
        DATABASE_URL=database_url,
        NATS_URL=nats_server.url,
        PROJECTOR_LISTEN="127.0.0.1:0",
        PROJECTOR_TICK_INTERVAL_S=0,
        PROJECTOR_WATCHDOG_S=0.2,
    )
    app = await start_projector(settings, ApiKeys([]), streams=streams)
    log = open_event_log(database_url)
    events = profiled_history(9)
    try:
        log.append_new([log.encode(e) for e in events[:200]])
        save_segments(log, {**SEGMENTS, **PROFILE_SEGMENTS})
        log.append_new([log.encode(e) for e in events[200:]])
        head = log.head_position()
        deadline = asyncio.get_running_loop().time() + 60
        while app.projection.position < head or await asyncio.to_thread(_building, database_url):
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.1)
            head = log.head_position()

        done = await asyncio.to_thread(rebuild, database_url, "--schema", "rb_one", "--check")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "check: identical" in done.stdout
        compared = int(done.stdout.split("identical: ")[1].split(" ")[0].replace(",", ""))
        assert compared > 50

        # A tampered live timeline is caught, with the first difference named.
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE projector_changes SET to_value = 'tampered'"
                " WHERE id = (SELECT min(id) + 5 FROM projector_changes)"
            )
        bad = await asyncio.to_thread(rebuild, database_url, "--schema", "rb_two", "--check")
        assert bad.returncode == 1
        assert "change #6 differs" in bad.stdout and "to_value: live='tampered'" in bad.stdout

        # Swapping needs the live projector stopped.
        refused = await asyncio.to_thread(rebuild, database_url, "--schema", "rb_three", "--swap")
        assert refused.returncode != 0 and "stop it before swapping" in refused.stderr
    finally:
        await app.stop(1)
    with psycopg.connect(database_url, autocommit=True) as conn:
        # A profile only the live tables have: the contract views must not show it after.
        conn.execute("INSERT INTO projector_profiles (app_id, user_id) VALUES ('app', 'stale')")
        assert _contract_rows(conn)[0] == _table_rows(conn)[0]
    swapped = await asyncio.to_thread(rebuild, database_url, "--schema", "rb_four", "--swap")
    assert swapped.returncode == 0, swapped.stderr
    with psycopg.connect(database_url, autocommit=True) as conn:
        tampered = conn.execute(
            "SELECT count(*) FROM projector_changes WHERE to_value = 'tampered'"
        ).fetchone()[0]
        assert tampered == 0  # the rebuilt, correct timeline is live now
        # Campaign's contract views read the rebuilt tables, and outlive the replaced ones.
        profiles, members = _contract_rows(conn)
        assert ("app", "stale") not in profiles and len(profiles) > 3 and len(members) > 3
        assert (profiles, members) == _table_rows(conn)
        conn.execute("DROP SCHEMA rb_four_replaced CASCADE")
        assert _contract_rows(conn) == (profiles, members)
    app = await start_projector(settings, ApiKeys([]), streams=streams)
    try:
        outcome = log.append_new([log.encode(track("after-swap", T0 + 10 * HOUR))])
        target = max(outcome.inserted.values())
        deadline = asyncio.get_running_loop().time() + 30
        while app.projection.position < target:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.1)
    finally:
        await app.stop(1)
        log.close()
        await delete_stream(nats_server.url, streams)


def _contract_rows(conn: psycopg.Connection) -> tuple[set[tuple], set[tuple]]:
    """Profiles and members as campaign reads them: through the projector's contract views."""
    profiles = conn.execute("SELECT app_id, user_id FROM contract_profiles_v1").fetchall()
    members = conn.execute(
        "SELECT app_id, segment_id, user_id, version FROM contract_segment_members_v1"
    ).fetchall()
    return set(profiles), set(members)


def _table_rows(conn: psycopg.Connection) -> tuple[set[tuple], set[tuple]]:
    """The same from the tables in public, the live read models."""
    profiles = conn.execute("SELECT app_id, user_id FROM public.projector_profiles").fetchall()
    members = conn.execute(
        "SELECT app_id, segment_id, user_id, version FROM public.segment_members"
    ).fetchall()
    return set(profiles), set(members)


def _building(database_url: str) -> bool:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM segments WHERE state <> 'active'").fetchone()
        return bool(row and row[0])
