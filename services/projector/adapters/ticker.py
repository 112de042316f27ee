"""The recorded clock: append a ClockTicked to the log once per tick interval.

Tick times are aligned to the interval and tick ids derive from the time, so
several tickers (projector replicas, restarts) store each tick exactly once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from services.eventlog.events import ClockTicked, tick_uuid
from services.eventlog.store import EventLog

_log = structlog.get_logger("projector.ticker")


def tick_at(time_us: int) -> ClockTicked:
    return ClockTicked(originator_id=tick_uuid(time_us), originator_version=1, tick_time_us=time_us)


class Ticker:
    def __init__(
        self,
        log: EventLog,
        interval_s: float = 60.0,
        clock_us: Callable[[], int] = lambda: time.time_ns() // 1000,
    ) -> None:
        self._log = log
        self._interval_us = int(interval_s * 1_000_000)
        self._clock_us = clock_us

    def tick(self) -> int:
        """Append the tick of the current interval (if not stored yet); its time."""
        aligned = self._clock_us() // self._interval_us * self._interval_us
        self._log.append_new([self._log.encode(tick_at(aligned))])
        return aligned

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.tick()
            except Exception as error:  # the database may be away; try again next tick
                _log.warning("tick failed", error=repr(error))
            now = self._clock_us()
            next_tick = (now // self._interval_us + 1) * self._interval_us
            stop.wait(max(0.01, (next_tick - now) / 1_000_000))
