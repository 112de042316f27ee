"""Time as a port, so every rule that depends on it can be tested at any instant."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_us(self) -> int:
        """Microseconds since the Unix epoch (UTC)."""
        ...


class SystemClock:
    def now_us(self) -> int:
        return time.time_ns() // 1000
