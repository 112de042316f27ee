"""Per-user lookups of the delivery log read only the batch's users' rows, however many
rows a campaign has and whatever the planner's statistics say (a young table has none).

Counted with pg_stat_xact_user_tables: the rows PostgreSQL read from the table in the
current transaction, by sequential or index scans.
"""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest

from services.campaign.adapters import deliveries as db
from services.campaign.adapters.connections import connection_pool
from services.campaign.schema import DELIVERIES

ROWS = 5_000  # sends of one campaign already in the log; never ANALYZEd


def _row(user: str, status: str, condition: str = "") -> db.DeliveryRow:
    now = time.time_ns() // 1000
    return db.DeliveryRow(
        send_id=uuid.uuid4().hex,
        app_id="shop",
        campaign_id="welcome",
        campaign_version=1,
        user_id=user,
        change_id=f"change-{user}",
        trigger_sequence=1,
        channel="in_app",
        grp="A",
        status=status,
        reason="",
        condition=condition,
        address=user,
        content={"title": "Hi"},
        decided_us=now,
        due_us=now,
    )


async def _rows_read(conn: psycopg.AsyncConnection) -> int:
    """Rows of the delivery log this connection read and has not reported yet (take the
    difference around a statement: earlier transactions may still be counted)."""
    cursor = await conn.execute(
        "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)"
        " FROM pg_stat_xact_user_tables WHERE relname = %s",
        (DELIVERIES,),
    )
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


@pytest.fixture
async def conn(database_url: str):
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        rows = [_row(f"old-{i}", "sent") for i in range(ROWS)]
        rows += [_row(f"waiting-{i}", "pending", "lifecycle:new") for i in range(ROWS)]
        for start in range(0, len(rows), 1000):
            await db.insert_deliveries(conn, rows[start : start + 1000])
        await conn.commit()
        yield conn


async def test_history_of_a_batch_reads_only_its_users_rows(conn) -> None:
    keys = [("shop", "old-1"), ("shop", "old-2")] + [("shop", f"new-{i}") for i in range(150)]
    async with conn.transaction():
        before = await _rows_read(conn)
        found = await db.history(conn, keys, ["welcome"], 0)
        read = await _rows_read(conn) - before
    admitted = {k for k, h in found.items() if h.last_admitted}
    assert admitted == {("shop", "old-1"), ("shop", "old-2")}
    # Two queries (recent sends, last admission), each may read the two users' rows.
    assert read <= 4, f"read {read} rows of the delivery log for 2 users' history"


async def test_cancelling_for_a_batch_reads_only_its_users_rows(conn) -> None:
    items = [("shop", "waiting-7", "lifecycle:new", 0, "lifecycle_changed")]
    items += [("shop", f"new-{i}", "lifecycle:new", 0, "lifecycle_changed") for i in range(150)]
    async with conn.transaction():
        before = await _rows_read(conn)
        cancelled = await db.cancel_pending(conn, items)
        read = await _rows_read(conn) - before
    assert cancelled == 1
    # The lookup reads the user's row, the update reads it again.
    assert read <= 2, f"read {read} rows of the delivery log to cancel 1 user's send"


async def test_lookups_are_planned_for_the_log_as_it_is_now(database_url: str) -> None:
    """Many batches while the log is small, then it grows: a plan cached back then (a scan
    per user, cheap on a small table) must not outlive the small table."""
    pool = connection_pool(database_url, max_size=1)  # one connection: its plans are reused
    await pool.open(wait=True)
    keys = [("shop", f"user-{i}") for i in range(256)]
    try:
        async with pool.connection() as conn:
            await db.insert_deliveries(conn, [_row(f"user-{i}", "sent") for i in range(100)])
            await conn.execute(f"ANALYZE {DELIVERIES}")
            await conn.commit()
            for _ in range(16):
                await db.history(conn, keys, ["welcome"], 0)
                await conn.commit()
            rows = [_row(f"later-{i}", "sent") for i in range(2 * ROWS)]
            for start in range(0, len(rows), 1000):
                await db.insert_deliveries(conn, rows[start : start + 1000])
            await conn.commit()
        async with pool.connection() as conn, conn.transaction():
            before = await _rows_read(conn)
            await db.history(conn, keys, ["welcome"], 0)
            read = await _rows_read(conn) - before
        # Two queries, each may read the 100 users' rows.
        assert read <= 200, f"read {read} rows of the delivery log for 100 users' history"
    finally:
        await pool.close()
