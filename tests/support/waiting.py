"""Waiting for something to become true in tests that drive processes (nothing is timed)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[T | None]], what: str, within: float = 60.0
) -> T:
    """Wait for `check()` to return something truthy, and return it. The deadline is
    generous on purpose: it only turns a hang into a failure naming `what`."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.1)
