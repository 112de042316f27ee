"""The render worker processes: a render over its time or memory limit fails that message
only, a stuck worker is killed and replaced, a tripped template costs nothing again, and
the event loop keeps running while a render is under way."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.campaign.adapters.rendering import RenderLimits, RenderPool
from services.campaign.domain.model import Template
from services.campaign.domain.ports import RenderJob
from services.campaign.domain.templates import (
    RENDER_ERROR,
    RENDER_TIMEOUT,
    RENDER_TOO_LARGE,
    Rendered,
    Unrendered,
)

USER = {"user": {"first_name": "Ada"}}
HELLO = RenderJob("hello", Template(body="Hello {{ user.first_name }}"), USER)
# Ten billion empty iterations: pure interpreter work, no value grows.
SPIN = RenderJob(
    "spin",
    Template(
        body="{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
    ),
    USER,
)
# One C call asking for ten billion characters.
HOG = RenderJob("hog", Template(body="{{ ('x' * 100000).replace('', 'y' * 100000) }}"), USER)


@pytest.fixture
async def pool() -> AsyncIterator[RenderPool]:
    renderer = RenderPool(RenderLimits(timeout_s=0.3, memory_mb=256, workers=2, trip_s=600))
    await renderer.start()
    yield renderer
    await renderer.close()


def reasons(outcomes: list[Rendered | Unrendered]) -> list[str]:
    return [o.reason if isinstance(o, Unrendered) else o.body for o in outcomes]


async def test_only_the_message_over_a_limit_fails_and_its_template_is_tripped(
    pool: RenderPool,
) -> None:
    broken = RenderJob("broken", Template(body="{{ 1/0 }}"), USER)
    first = await pool.render([HELLO, SPIN, HOG, broken, HELLO])
    assert reasons(first) == [
        "Hello Ada",
        RENDER_TIMEOUT,
        RENDER_TOO_LARGE,
        RENDER_ERROR,
        "Hello Ada",
    ]
    # Tripped: spin and hog fail at once now (said so), the error is tried again.
    again = await pool.render([SPIN, HOG, broken, HELLO])
    assert reasons(again) == [RENDER_TIMEOUT, RENDER_TOO_LARGE, RENDER_ERROR, "Hello Ada"]
    assert all("not tried again" in o.detail for o in again[:2] if isinstance(o, Unrendered))


async def test_the_event_loop_runs_on_while_a_render_is_under_way(pool: RenderPool) -> None:
    rendering = asyncio.ensure_future(pool.render([SPIN]))
    ticks = 0
    while not rendering.done():
        ticks += 1
        await asyncio.sleep(0.01)
    assert ticks > 0 and reasons(rendering.result()) == [RENDER_TIMEOUT]


async def test_a_stuck_worker_is_killed_and_replaced() -> None:
    pool = RenderPool(RenderLimits(timeout_s=0.3, workers=1))
    try:
        await pool.render([HELLO])
        worker = pool._workers[0]._process  # stopped, as if stuck in one long C call
        assert worker is not None
        os.kill(worker.pid, signal.SIGSTOP)
        assert reasons(await pool.render([HELLO, HELLO])) == [RENDER_TIMEOUT, RENDER_TIMEOUT]
        assert await worker.wait() == -signal.SIGKILL
        # A new worker renders what comes next (the stuck template stays tripped).
        other = RenderJob("other", Template(body="Hi {{ user.first_name }}"), USER)
        assert reasons(await pool.render([other, HELLO])) == ["Hi Ada", RENDER_TIMEOUT]
    finally:
        await pool.close()


async def test_renders_in_flight_at_once_use_separate_workers(pool: RenderPool) -> None:
    slow, fast = await asyncio.gather(pool.render([SPIN]), pool.render([HELLO]))
    assert reasons(slow) == [RENDER_TIMEOUT] and reasons(fast) == ["Hello Ada"]


async def test_workers_inherit_no_settings_or_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPAIGN_SMTP_PASSWORD", "hunter2")
    pool = RenderPool(RenderLimits(workers=1))
    try:
        assert reasons(await pool.render([HELLO])) == ["Hello Ada"]
        worker = pool._workers[0]._process
        assert worker is not None
        environment = await asyncio.to_thread(Path(f"/proc/{worker.pid}/environ").read_bytes)
        assert b"hunter2" not in environment and b"CAMPAIGN_" not in environment
    finally:
        await pool.close()
