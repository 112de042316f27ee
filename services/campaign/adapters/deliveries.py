"""The delivery log in PostgreSQL: decisions, their fate, and what reads them.

Everything here takes an open async connection so callers choose the
transaction: the decider records a whole batch of decisions, its change ids
and its cancellations in one.

Lookups for a batch of users join the batch's keys to the log through LATERAL
subqueries that end in `OFFSET 0`. Without it PostgreSQL pulls a simple LATERAL
subquery up into an ordinary join and plans it from table statistics, which a young
or fast-growing log does not have: the plan then read every row of a campaign (or
every pending send) once per batch, 240 ms for 150 users at 20k rows and growing.
`OFFSET 0` keeps each subquery a probe of the (app_id, user_id) index per user.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from services.campaign.domain.eligibility import ADMITTED, COUNTED_BY_CAPS, RecentSend, UserHistory
from services.campaign.schema import CHANGES_SEEN, DELIVERIES, INBOX
from services.eventlog.events import us_to_datetime as _ts

Key = tuple[str, str]  # (app_id, user_id)


@dataclass(frozen=True)
class DeliveryRow:
    send_id: str
    app_id: str
    campaign_id: str
    campaign_version: int
    user_id: str
    change_id: str
    trigger_sequence: int
    channel: str
    grp: str
    status: str
    reason: str
    condition: str
    address: str
    content: dict[str, Any] | None
    decided_us: int
    due_us: int
    # Why a send failed before it was tried (e.g. its template raised).
    last_error: str = ""


async def mark_seen(conn: AsyncConnection, change_ids: Sequence[str], now_us: int) -> set[str]:
    """Record change ids; the ones not seen before."""
    if not change_ids:
        return set()
    cursor = await conn.execute(
        f"INSERT INTO {CHANGES_SEEN} (change_id, seen_at)"
        " SELECT unnest(%s::text[]), %s ON CONFLICT DO NOTHING RETURNING change_id",
        (list(change_ids), _ts(now_us)),
    )
    return {row[0] for row in await cursor.fetchall()}


def _lock_key(key: Key) -> int:
    digest = hashlib.blake2b(f"{key[0]}\x1f{key[1]}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def lock_users(conn: AsyncConnection, keys: Sequence[Key]) -> None:
    """Serialise decisions about the same users across replicas (until commit)."""
    ordered = sorted({_lock_key(k) for k in keys})
    if ordered:
        await conn.execute(
            "SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k", (ordered,)
        )


async def cancel_pending(
    conn: AsyncConnection, items: Sequence[tuple[str, str, str, int, str]]
) -> int:
    """Cancel pending sends whose condition a later change broke.

    items: (app_id, user_id, condition, breaking change's user_sequence, reason).
    """
    if not items:
        return 0
    cursor = await conn.execute(
        f"""
        UPDATE {DELIVERIES} d SET status = 'cancelled', reason = x.reason
        FROM (
            SELECT p.send_id, c.reason
            FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::text[])
                 AS c(app_id, user_id, condition, seq, reason)
            CROSS JOIN LATERAL (
                SELECT send_id FROM {DELIVERIES} p
                WHERE p.app_id = c.app_id AND p.user_id = c.user_id
                  AND p.condition = c.condition AND p.status = 'pending'
                  AND (c.seq = 0 OR p.trigger_sequence = 0 OR p.trigger_sequence < c.seq)
                OFFSET 0
            ) p
        ) x
        WHERE d.send_id = x.send_id AND d.status = 'pending'
        """,
        tuple(list(column) for column in zip(*items, strict=True)),
    )
    return cursor.rowcount


async def history(
    conn: AsyncConnection,
    keys: Sequence[Key],
    campaign_ids: Sequence[str],
    since_us: int,
) -> dict[Key, UserHistory]:
    """Recent sends (due after since_us) and last admission per campaign of these users."""
    out: dict[Key, UserHistory] = {k: UserHistory() for k in keys}
    apps, users = [k[0] for k in keys], [k[1] for k in keys]
    cursor = await conn.execute(
        f"""
        SELECT k.app_id, k.user_id, d.campaign_id, d.channel,
               (extract(epoch FROM d.due_at) * 1000000)::bigint
        FROM unnest(%s::text[], %s::text[]) AS k(app_id, user_id)
        CROSS JOIN LATERAL (
            SELECT campaign_id, channel, due_at FROM {DELIVERIES} d
            WHERE d.app_id = k.app_id AND d.user_id = k.user_id
              AND d.status = ANY(%s) AND d.due_at > %s
            OFFSET 0
        ) d
        """,
        (apps, users, sorted(COUNTED_BY_CAPS), _ts(since_us)),
    )
    for app_id, user_id, campaign_id, channel, due_us in await cursor.fetchall():
        out[(app_id, user_id)].recent.append(RecentSend(campaign_id, channel, due_us))
    if campaign_ids:
        cursor = await conn.execute(
            f"""
            SELECT k.app_id, k.user_id, d.campaign_id,
                   (extract(epoch FROM max(d.decided_at)) * 1000000)::bigint
            FROM unnest(%s::text[], %s::text[]) AS k(app_id, user_id)
            CROSS JOIN LATERAL (
                SELECT campaign_id, decided_at FROM {DELIVERIES} d
                WHERE d.app_id = k.app_id AND d.user_id = k.user_id
                  AND d.campaign_id = ANY(%s) AND d.status = ANY(%s)
                OFFSET 0
            ) d
            GROUP BY k.app_id, k.user_id, d.campaign_id
            """,
            (apps, users, list(campaign_ids), sorted(ADMITTED)),
        )
        for app_id, user_id, campaign_id, last_us in await cursor.fetchall():
            out[(app_id, user_id)].last_admitted[campaign_id] = last_us
    return out


_INSERT = f"""
INSERT INTO {DELIVERIES} (send_id, app_id, campaign_id, campaign_version, user_id, change_id,
    trigger_sequence, channel, grp, status, reason, condition, address, content, decided_at,
    due_at, last_error)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::text[], %s::text[],
    %s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
    %s::jsonb[], %s::timestamptz[], %s::timestamptz[], %s::text[])
ON CONFLICT DO NOTHING
"""


async def insert_deliveries(conn: AsyncConnection, rows: Sequence[DeliveryRow]) -> int:
    """Insert decisions (one statement); a decision already recorded is left as it is."""
    if not rows:
        return 0
    cursor = await conn.execute(
        _INSERT,
        (
            [r.send_id for r in rows],
            [r.app_id for r in rows],
            [r.campaign_id for r in rows],
            [r.campaign_version for r in rows],
            [r.user_id for r in rows],
            [r.change_id for r in rows],
            [r.trigger_sequence for r in rows],
            [r.channel for r in rows],
            [r.grp for r in rows],
            [r.status for r in rows],
            [r.reason for r in rows],
            [r.condition for r in rows],
            [r.address for r in rows],
            [Jsonb(r.content) if r.content is not None else None for r in rows],
            [_ts(r.decided_us) for r in rows],
            [_ts(r.due_us) for r in rows],
            [r.last_error[:500] for r in rows],
        ),
    )
    return cursor.rowcount


def _move_to_inbox(due: str) -> str:
    """Mark the in-app sends chosen by `due` (a query of send ids) sent and put them
    into the inbox, in one statement: a message is in the inbox exactly when its
    delivery says sent."""
    return f"""
        WITH due AS ({due}), sent AS (
            UPDATE {DELIVERIES} d SET status = 'sent', sent_at = %(now)s,
                attempts = d.attempts + 1
            FROM due WHERE d.send_id = due.send_id AND d.status = 'pending'
            RETURNING d.send_id, d.app_id, d.user_id, d.campaign_id, d.content
        )
        INSERT INTO {INBOX} (app_id, user_id, message_id, campaign_id, title, body, data,
            created_at)
        SELECT app_id, user_id, send_id, campaign_id, coalesce(content->>'title', ''),
            coalesce(content->>'body', ''), coalesce(content->'data', '{{}}'), %(now)s
        FROM sent
        ON CONFLICT DO NOTHING
        """


_DELIVER_DUE_IN_APP = _move_to_inbox(
    f"""
    SELECT send_id FROM {DELIVERIES}
    WHERE status = 'pending' AND channel = 'in_app' AND due_at <= %(now)s
    ORDER BY due_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
    """
)
_DELIVER_IN_APP_NOW = _move_to_inbox("SELECT unnest(%(ids)s::text[]) AS send_id")


async def deliver_in_app(conn: AsyncConnection, now_us: int, limit: int) -> int:
    """Deliver in-app sends that have come due (delayed ones, quiet hours ending)."""
    cursor = await conn.execute(_DELIVER_DUE_IN_APP, {"now": _ts(now_us), "limit": limit})
    return cursor.rowcount


async def deliver_in_app_now(conn: AsyncConnection, send_ids: Sequence[str], now_us: int) -> int:
    """Deliver these in-app sends (still pending) at once, in the caller's transaction:
    the decider hands over what is due the moment it is decided."""
    if not send_ids:
        return 0
    cursor = await conn.execute(_DELIVER_IN_APP_NOW, {"now": _ts(now_us), "ids": list(send_ids)})
    return cursor.rowcount


@dataclass(frozen=True)
class Claimed:
    send_id: str
    app_id: str
    campaign_id: str
    user_id: str
    change_id: str
    channel: str
    grp: str
    address: str
    content: dict[str, Any]
    attempts: int


async def claim_due(
    conn: AsyncConnection, now_us: int, limit: int, lease_s: float
) -> list[Claimed]:
    """Lease due sends of the provider channels (and sends whose lease ran out: their
    process died mid-call). Commit before calling providers."""
    cursor = await conn.execute(
        f"""
        WITH due AS (
            SELECT send_id FROM {DELIVERIES}
            WHERE channel <> 'in_app' AND due_at <= %(now)s
              AND (status = 'pending' OR (status = 'sending' AND lease_until < %(now)s))
            ORDER BY due_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
        )
        UPDATE {DELIVERIES} d SET status = 'sending', attempts = d.attempts + 1,
            lease_until = %(lease)s
        FROM due WHERE d.send_id = due.send_id
        RETURNING d.send_id, d.app_id, d.campaign_id, d.user_id, d.change_id, d.channel,
            d.grp, d.address, d.content, d.attempts
        """,
        {"now": _ts(now_us), "limit": limit, "lease": _ts(now_us + int(lease_s * 1e6))},
    )
    return [Claimed(*row) for row in await cursor.fetchall()]


@dataclass(frozen=True)
class Outcome:
    send_id: str
    status: str
    reason: str = ""
    error: str = ""
    provider_id: str = ""
    # For a retry (status pending): when to try again.
    due_us: int = 0


async def finish(conn: AsyncConnection, outcomes: Sequence[Outcome], now_us: int) -> None:
    if not outcomes:
        return
    await conn.execute(
        f"""
        UPDATE {DELIVERIES} d SET status = o.status, reason = o.reason, last_error = o.error,
            provider_id = o.provider_id, lease_until = NULL,
            sent_at = CASE WHEN o.status = 'sent' THEN %s ELSE d.sent_at END,
            due_at = CASE WHEN o.status = 'pending' THEN o.due ELSE d.due_at END
        FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
                    %s::timestamptz[]) AS o(send_id, status, reason, error, provider_id, due)
        WHERE d.send_id = o.send_id AND d.status = 'sending'
        """,
        (
            _ts(now_us),
            [o.send_id for o in outcomes],
            [o.status for o in outcomes],
            [o.reason for o in outcomes],
            [o.error[:500] for o in outcomes],
            [o.provider_id for o in outcomes],
            [_ts(o.due_us or now_us) for o in outcomes],
        ),
    )


async def cancel_campaigns(conn: AsyncConnection, campaign_ids: Sequence[str], reason: str) -> int:
    """Cancel every send of these campaigns that has not gone out yet."""
    if not campaign_ids:
        return 0
    cursor = await conn.execute(
        f"UPDATE {DELIVERIES} SET status = 'cancelled', reason = %s"
        " WHERE campaign_id = ANY(%s) AND status = 'pending'",
        (reason, list(campaign_ids)),
    )
    return cursor.rowcount
