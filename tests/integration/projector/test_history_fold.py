"""Differential: 90 days of an app folded live (the recorded clock ticking every hour)
and the same events imported as history into a fresh app end the same: profiles,
memberships and every change at the same effective time; with a projector restart in
the middle of the import, and a rebuild from the log reproducing it exactly."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

from services.eventlog.store import EventLog
from tests.support import history_sim
from tests.support.history_sim import DAYS, POLICIES, define, live, outcome, simulated
from tests.support.logevents import DAY, T0, history, tick
from tests.support.processes import REPO
from tests.support.projector import InProcessProjector, append, in_process_projector


async def _folded(projector: InProcessProjector, log: EventLog) -> None:
    head = log.head_position()
    deadline = asyncio.get_running_loop().time() + 120
    while projector.app.projection.position < head:
        assert asyncio.get_running_loop().time() < deadline, "not folded"
        await asyncio.sleep(0.1)


async def _active(projector: InProcessProjector, segments: int) -> None:
    def count() -> int:
        with projector.app.store.cursor() as curs:
            curs.execute("SELECT count(*) AS n FROM segments WHERE state = 'active'")
            row = curs.fetchone()
            return int(row["n"]) if row else 0

    deadline = asyncio.get_running_loop().time() + 60
    while await asyncio.to_thread(count) < segments:
        assert asyncio.get_running_loop().time() < deadline, "segments not active"
        await asyncio.sleep(0.1)


def _append(log: EventLog, events: list[object]) -> None:
    for start in range(0, len(events), 2000):
        append(log, *events[start : start + 2000])


async def test_an_imported_history_ends_as_the_same_days_folded_live(
    database_url: str, nats_server: Any
) -> None:
    end = T0 + DAYS * DAY
    settings: dict[str, Any] = {"PROJECTOR_POLICIES": POLICIES, "PROJECTOR_BATCH_SIZE": 500}
    imported = history(simulated("hist", seed=14), job="job-14", app="hist")
    half = len(imported) // 2
    async with in_process_projector(database_url, nats_server.url, **settings) as projector:
        define(projector.log, "live")
        define(projector.log, "hist")
        await _active(projector, 2 * len(history_sim.SEGMENTS))
        _append(projector.log, live(simulated("live", seed=14), end))
        _append(projector.log, imported[:half])
        await _folded(projector, projector.log)
    # A new projector goes on from the committed state, in the middle of the import.
    async with in_process_projector(database_url, nats_server.url, **settings) as projector:
        _append(projector.log, imported[half:])
        append(projector.log, tick(end + DAY))
        await _folded(projector, projector.log)

    lived, imported_outcome = outcome(database_url, "live"), outcome(database_url, "hist")
    assert len(lived["changes"]) > 500
    assert {c[0] for c in lived["changes"]} == {"lifecycle", "rfm", "membership"}
    assert {c[3] for c in lived["changes"] if c[0] == "lifecycle"} >= {
        "new",
        "active",
        "dormant",
        "churned",
        "reactivated",
    }
    assert imported_outcome["profiles"] == lived["profiles"]
    assert imported_outcome["members"] == lived["members"]
    assert imported_outcome["changes"] == lived["changes"]

    # Replaying the log (import and restart included) gives every change again, identically.
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.projector.rebuild", "--schema", "rb_hist", "--check"],
        env={"DATABASE_URL": database_url, "PROJECTOR_POLICIES": POLICIES, "PATH": "/usr/bin"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "check: identical" in done.stdout
