"""Reading the delivery log and the inbox: stats, a user's deliveries, inbox pages."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from services.campaign.domain.assignment import CONTROL, HOLDOUT
from services.campaign.schema import DELIVERIES, INBOX
from services.eventlog.events import us_to_datetime


@dataclass
class GroupCounts:
    name: str
    triggered: int = 0
    suppressed: dict[str, int] = field(default_factory=dict)
    cancelled: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    failed: int = 0
    pending: int = 0
    withheld: int = 0
    converted: int = 0

    @property
    def is_control(self) -> bool:
        return self.name == CONTROL

    @property
    def exposed(self) -> int:
        """Users whose conversions count: sent (control: withheld on purpose)."""
        return self.withheld if self.is_control else self.sent


async def group_counts(
    pool: AsyncConnectionPool, app_id: str, campaign_id: str
) -> dict[str, GroupCounts]:
    async with pool.connection() as conn:
        cursor = await conn.execute(
            f"SELECT grp, status, reason, count(*), count(converted_at) FROM {DELIVERIES}"
            " WHERE campaign_id = %s AND app_id = %s GROUP BY grp, status, reason",
            (campaign_id, app_id),
        )
        rows = await cursor.fetchall()
    out: dict[str, GroupCounts] = {}
    for grp, status, reason, count, converted in rows:
        counts = out.setdefault(grp, GroupCounts(grp))
        counts.triggered += count
        if status == "suppressed":
            counts.suppressed[reason] = counts.suppressed.get(reason, 0) + count
        elif status == "cancelled":
            counts.cancelled[reason] = counts.cancelled.get(reason, 0) + count
        elif status == "sent":
            counts.sent += count
            counts.converted += converted
        elif status == "failed":
            counts.failed += count
        elif status in ("pending", "sending"):
            counts.pending += count
        elif status in ("control", "holdout"):
            counts.withheld += count
            counts.converted += converted
    return out


@dataclass(frozen=True)
class DeliveryRecord:
    send_id: str
    campaign_id: str
    campaign_version: int
    user_id: str
    change_id: str
    channel: str
    grp: str
    status: str
    reason: str
    attempts: int
    decided_at: datetime
    due_at: datetime
    sent_at: datetime | None
    converted_at: datetime | None
    last_error: str

    @property
    def variant(self) -> str:
        return "" if self.grp in (CONTROL, HOLDOUT) else self.grp


async def user_deliveries(
    pool: AsyncConnectionPool,
    app_id: str,
    user_id: str,
    campaign_id: str,
    offset: int,
    limit: int,
) -> list[DeliveryRecord]:
    """A user's deliveries (of one campaign if given), or without a user one campaign's,
    newest first."""
    columns = (
        "send_id, campaign_id, campaign_version, user_id, change_id, channel, grp,"
        " status, reason, attempts, decided_at, due_at, sent_at, converted_at, last_error"
    )
    order = "ORDER BY decided_at DESC, send_id DESC OFFSET %s LIMIT %s"
    async with pool.connection() as conn:
        if user_id:
            cursor = await conn.execute(
                f"SELECT {columns} FROM {DELIVERIES} WHERE app_id = %s AND user_id = %s"
                f" AND (%s = '' OR campaign_id = %s) {order}",
                (app_id, user_id, campaign_id, campaign_id, offset, limit),
            )
        else:
            cursor = await conn.execute(
                f"SELECT {columns} FROM {DELIVERIES} WHERE app_id = %s AND campaign_id = %s"
                f" {order}",
                (app_id, campaign_id, offset, limit),
            )
        return [DeliveryRecord(*row) for row in await cursor.fetchall()]


@dataclass(frozen=True)
class InboxRecord:
    message_id: str
    campaign_id: str
    title: str
    body: str
    data: dict[str, Any]
    created_at: datetime
    read_at: datetime | None


async def inbox_page(
    pool: AsyncConnectionPool,
    app_id: str,
    user_id: str,
    unread_only: bool,
    offset: int,
    limit: int,
) -> tuple[list[InboxRecord], int]:
    """A page of messages, newest first, and the number unread."""
    async with pool.connection() as conn:
        cursor = await conn.execute(
            f"SELECT message_id, campaign_id, title, body, data, created_at, read_at FROM {INBOX}"
            " WHERE app_id = %s AND user_id = %s AND (NOT %s OR read_at IS NULL)"
            " ORDER BY created_at DESC, message_id DESC OFFSET %s LIMIT %s",
            (app_id, user_id, unread_only, offset, limit),
        )
        records = [InboxRecord(*row) for row in await cursor.fetchall()]
        cursor = await conn.execute(
            f"SELECT count(*) FROM {INBOX} WHERE app_id = %s AND user_id = %s AND read_at IS NULL",
            (app_id, user_id),
        )
        row = await cursor.fetchone()
    return records, int(row[0]) if row else 0


async def mark_read(
    pool: AsyncConnectionPool, app_id: str, user_id: str, message_ids: list[str], now_us: int
) -> int:
    async with pool.connection() as conn:
        cursor = await conn.execute(
            f"UPDATE {INBOX} SET read_at = %s WHERE app_id = %s AND user_id = %s"
            " AND message_id = ANY(%s) AND read_at IS NULL",
            (us_to_datetime(now_us), app_id, user_id, message_ids),
        )
        return cursor.rowcount
