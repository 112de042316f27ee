"""The live page: membership, lifecycle and RFM changes as they happen (server-sent events)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from services.console.live import ChangeFeed
from services.console.web.access import require
from services.console.web.render import page

KEEPALIVE_S = 15.0


async def live_page(request: Request) -> Response:
    access = await require(request)
    return page(request, "live.html", access)


async def _events(request: Request, feed: ChangeFeed, app_id: str) -> AsyncIterator[bytes]:
    changes = await feed.watch(app_id)
    yield b"retry: 2000\nevent: ready\ndata: {}\n\n"
    queue: asyncio.Queue[dict[str, object]] = asyncio.Queue(maxsize=1000)

    async def pump() -> None:
        async for change in changes:
            if queue.full():
                queue.get_nowait()  # a slow browser loses the oldest, never blocks the feed
            queue.put_nowait(change)

    task = asyncio.create_task(pump())
    try:
        while not await request.is_disconnected():
            try:
                change = await asyncio.wait_for(queue.get(), timeout=KEEPALIVE_S)
            except TimeoutError:
                if task.done():
                    break
                yield b": keepalive\n\n"
                continue
            yield f"event: change\ndata: {json.dumps(change)}\n\n".encode()
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


async def live_events(request: Request) -> Response:
    access = await require(request)
    feed: ChangeFeed = request.app.state.feed
    return StreamingResponse(
        _events(request, feed, access.app_id),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


def routes() -> list[Route]:
    return [Route("/live", live_page), Route("/live/events", live_events)]
