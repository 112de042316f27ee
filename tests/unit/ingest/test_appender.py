"""Micro-batching: concurrent appends share transactions, each call gets its positions."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from eventsourcing.persistence import StoredEvent

from services.common.readiness import Check
from services.eventlog.store import AppendOutcome
from services.ingest.appender import Appender


@dataclass(frozen=True)
class Fact:
    originator_id: uuid.UUID
    size: int = 10


class FakeLog:
    """An in-memory log honouring the LogWriter contract (first write of an id wins)."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.positions: dict[uuid.UUID, int] = {}
        self.transactions: list[int] = []
        self.transaction_bytes: list[int] = []
        self.gate = gate
        self.fail_next = False

    def encode(self, event: Fact) -> StoredEvent:
        return StoredEvent(event.originator_id, 1, "fact", b"x" * event.size)

    def append_new(self, stored: Sequence[StoredEvent]) -> AppendOutcome:
        if self.gate is not None:
            self.gate.wait(5)
        if self.fail_next:
            self.fail_next = False
            raise OSError("database went away")
        ids = [e.originator_id for e in stored]
        assert len(ids) == len(set(ids)), "appender must dedupe within a transaction"
        inserted, duplicates = {}, {}
        for originator_id in ids:
            if originator_id in self.positions:
                duplicates[originator_id] = self.positions[originator_id]
            else:
                self.positions[originator_id] = inserted[originator_id] = len(self.positions) + 1
        self.transactions.append(len(stored))
        self.transaction_bytes.append(sum(len(e.state) for e in stored))
        return AppendOutcome(inserted=inserted, duplicates=duplicates)


def facts(n: int, size: int = 10) -> list[Fact]:
    return [Fact(uuid.uuid4(), size) for _ in range(n)]


async def test_positions_come_back_in_call_order() -> None:
    log = FakeLog()
    appender = Appender(log)
    batch = facts(5)
    result = await appender.append(batch)
    assert [r.position for r in result] == [1, 2, 3, 4, 5]
    assert not any(r.duplicate for r in result)
    await appender.close()


async def test_concurrent_calls_share_transactions_while_one_is_in_flight() -> None:
    gate = threading.Event()
    log = FakeLog(gate)
    appender = Appender(log, max_inflight=1)
    first = asyncio.create_task(appender.append(facts(1)))
    await asyncio.sleep(0.05)  # the first flush is now blocked in the "database"
    others = [asyncio.create_task(appender.append(facts(3))) for _ in range(10)]
    await asyncio.sleep(0.05)
    gate.set()
    await asyncio.gather(first, *others)
    assert log.transactions == [1, 30]
    await appender.close()


async def test_duplicates_within_and_across_calls_get_the_original_position() -> None:
    log = FakeLog()
    appender = Appender(log)
    one = facts(1)[0]
    a, b = await asyncio.gather(appender.append([one, one]), appender.append([one]))
    assert a[0].position == a[1].position == b[0].position == 1
    assert [a[0].duplicate, a[1].duplicate, b[0].duplicate] == [False, True, True]
    again = await appender.append([one])
    assert again[0].duplicate and again[0].position == 1
    await appender.close()


async def test_batches_are_bounded_in_events_and_bytes() -> None:
    gate = threading.Event()
    log = FakeLog(gate)
    appender = Appender(log, max_events=4, max_bytes=10_000, max_inflight=1)
    task = asyncio.create_task(appender.append(facts(10)))
    big = asyncio.create_task(appender.append(facts(3, size=4000)))
    await asyncio.sleep(0.05)
    gate.set()
    await asyncio.gather(task, big)
    assert sum(log.transactions) == 13
    assert max(log.transactions) <= 4
    # No transaction carries three of the 4 kB events: they would exceed 10 kB.
    assert max(log.transaction_bytes) < 10_000
    assert len(log.transactions) == 4
    await appender.close()


async def test_a_failed_transaction_fails_its_calls_and_the_next_ones_work() -> None:
    log = FakeLog()
    appender = Appender(log)
    log.fail_next = True
    with pytest.raises(OSError, match="went away"):
        await appender.append(facts(2))
    assert [r.position for r in await appender.append(facts(2))] == [1, 2]
    await appender.close()


async def test_failed_transactions_in_a_row_trip_the_database_check() -> None:
    log = FakeLog()
    database = Check("database-appends", trip_after=2)
    appender = Appender(log, health=database)
    log.fail_next = True
    with pytest.raises(OSError, match="went away"):
        await appender.append(facts(1))
    assert database.up  # one failure is not an outage
    log.fail_next = True
    with pytest.raises(OSError, match="went away"):
        await appender.append(facts(1))
    assert not database.up
    await appender.append(facts(1))
    assert database.up and database.failures == 0
    await appender.close()
