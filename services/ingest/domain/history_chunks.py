"""Cutting a sorted history into chunks: one transaction per partition per chunk.

The appender reads staged rows in `sort_key` order after its cursor and offers them to
a `ChunkPlanner`, which places each with the ticks due before it (`history_clock`):
ticks go to every partition, a row to its user's partition. A chunk is full when one
more item would take a partition's transaction past `max_events` rows or `max_bytes`
stored bytes (the bounds of the notes: about 2 MB, 2,000 events); a sparse history may
even cut between two ticks. The cursor says where the next chunk starts, so a chunk is
planned the same way again after a restart.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.ingest.domain.history_clock import SortKey, due_ticks

# Bytes counted per log row beyond its state (ids, topic, tuple overhead).
ROW_OVERHEAD = 96
# Stored size of a tick (its JSON state is about 80 bytes).
TICK_BYTES = 96 + ROW_OVERHEAD


@dataclass(frozen=True)
class StagedRow:
    """One staged history event: its place in the order, who it is about, its size and
    the encoded log event (opaque here)."""

    key: SortKey
    user_id: str
    anonymous_id: str
    size: int
    stored: Any = None

    @property
    def event_time_us(self) -> int:
        return self.key[0]

    @property
    def log_id(self) -> uuid.UUID:
        return self.key[2]


@dataclass(frozen=True)
class AppendCursor:
    """How far a job has appended: the last row's key and time, and the newest tick."""

    after: SortKey | None = None
    last_tick_us: int | None = None

    @property
    def last_event_us(self) -> int | None:
        return None if self.after is None else self.after[0]


Item = int | StagedRow  # a tick (its time) or a row


@dataclass
class _Batch:
    items: list[Item] = field(default_factory=list)
    size: int = 0


class ChunkPlanner:
    """Plans one chunk from `cursor` on; `route(row)` names a row's partition."""

    def __init__(
        self,
        cursor: AppendCursor,
        partitions: int,
        route: Callable[[StagedRow], int],
        *,
        max_events: int = 2000,
        max_bytes: int = 2_000_000,
    ) -> None:
        self.cursor = cursor
        self.rows: list[StagedRow] = []
        self.ticks: list[int] = []
        self._batches = [_Batch() for _ in range(partitions)]
        self._route = route
        self._max_events = max_events
        self._max_bytes = max_bytes
        self.full = False

    def batches(self) -> list[list[Item]]:
        """Each partition's items, in append order."""
        return [batch.items for batch in self._batches]

    def offer(self, row: StagedRow) -> bool:
        """Place `row` after the ticks due before it; False (and the chunk is full) when
        it does not fit, though some of those ticks may have."""
        if self.full:
            return False
        if not self._ticks_before(row.event_time_us):
            return False
        batch = self._batches[self._route(row)]
        if not self._fits(batch, row.size):
            self.full = True
            return False
        batch.items.append(row)
        batch.size += row.size
        self.rows.append(row)
        self.cursor = AppendCursor(row.key, self.cursor.last_tick_us)
        return True

    def end_of_history(self) -> bool:
        """Place the ticks due after the last event; True when all of them fit."""
        return not self.full and self._ticks_before(None)

    def _ticks_before(self, next_event_us: int | None) -> bool:
        last_event = self.cursor.last_event_us
        if last_event is None:
            return True
        emitted = self.cursor.last_tick_us
        for tick in due_ticks(last_event, next_event_us):
            if emitted is not None and tick <= emitted:
                continue
            if not all(self._fits(batch, TICK_BYTES) for batch in self._batches):
                self.full = True
                return False
            for batch in self._batches:
                batch.items.append(tick)
                batch.size += TICK_BYTES
            self.ticks.append(tick)
            self.cursor = AppendCursor(self.cursor.after, tick)
        return True

    def _fits(self, batch: _Batch, size: int) -> bool:
        if not batch.items:
            return True
        return len(batch.items) < self._max_events and batch.size + size <= self._max_bytes
