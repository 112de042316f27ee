"""What must hold after faults: nothing lost, nothing doubled, the stream equals a replay.

- The change stream: every change id once; per (app, user) the sequence numbers run
  1, 2, 3, ... in stream order (no gap, none out of order).
- The replay: every read model folded again from the log (in a child process: the
  rebuild points its connections at a fresh schema through the process environment)
  produces exactly the published changes, one by one (services.projector.replay_check).
- Campaign: one delivery decision per (campaign, triggering change), none for anything
  else, none left pending; one inbox message per in-app send; one webhook effect per
  webhook send (a call cut by a kill may be repeated with the same idempotency key).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping

import nats
import psycopg
from psycopg import sql

from services.common.jetstream import ChangeStreamSettings
from services.projector.replay_check import (
    Comparison,
    Mark,
    Published,
    compare,
    live_progress,
    read_changes,
    rebuilt_changes,
)
from tests.support.receivers import HttpReceiver

Trigger = Callable[[Published], bool]
FINAL = ("sent", "suppressed", "control", "holdout", "cancelled", "failed")


async def recorded_changes(
    nats_url: str | list[str], streams: ChangeStreamSettings, within: float = 60.0
) -> list[Published]:
    """Every change on the stream, in stream order: read again until the read is whole
    (a server just restarted may refuse JetStream requests for a moment)."""
    deadline = time.monotonic() + within
    while True:
        try:
            nc = await nats.connect(nats_url, connect_timeout=2, max_reconnect_attempts=2)
            try:
                held = (await nc.jetstream(timeout=5).stream_info(streams.stream)).state.messages
            finally:
                await nc.close()
            recorded = await read_changes(nats_url, streams, Mark(streams.stream, 0))  # type: ignore[arg-type]
            if len(recorded) == held:
                return recorded
            problem = f"read {len(recorded)} of {held} changes"
        except (nats.errors.Error, TimeoutError) as error:
            problem = repr(error)
        if time.monotonic() > deadline:
            raise AssertionError(f"cannot read the change stream: {problem}")
        await asyncio.sleep(0.5)


def stream_problems(recorded: list[Published]) -> list[str]:
    """Doubled change ids and per-user sequences with a gap or out of order."""
    problems = [
        f"change {change_id} published {n} times"
        for change_id, n in Counter(p.change_id for p in recorded).items()
        if n > 1
    ]
    sequences: dict[tuple[str, str], list[int]] = defaultdict(list)
    for p in recorded:
        header = p.message.header  # type: ignore[attr-defined]
        sequences[(header.app_id, header.user_id)].append(int(header.user_sequence))
    for user, seen in sequences.items():
        if seen != list(range(1, len(seen) + 1)):
            problems.append(f"user {user}: sequences {seen[:50]} are not 1, 2, 3, ...")
    return problems


def _rebuild(database_url: str, schema_name: str, policies: str, until: int) -> None:
    from services.projector.config import Policies
    from services.projector.rebuild import rebuild

    rebuild(database_url, schema_name, Policies(json.loads(policies or "{}")), until=until)


async def replay_comparison(
    database_url: str, recorded: list[Published], policies: str
) -> Comparison:
    """Rebuild from the log up to the live projector's position and compare with
    `recorded`; the live projector must have published everything (its outbox empty)."""
    from services.projector.rebuild import SUBJECT_PREFIX

    through, pending = await asyncio.to_thread(live_progress, database_url)
    assert pending == 0, f"{pending} changes still in the outbox"
    name = f"faults_replay_{uuid.uuid4().hex[:8]}"
    child = multiprocessing.get_context("spawn").Process(
        target=_rebuild, args=(database_url, name, policies, through)
    )
    child.start()
    await asyncio.to_thread(child.join, 300)
    assert child.exitcode == 0, f"the rebuild exited with {child.exitcode}"
    try:
        return await asyncio.to_thread(
            compare, recorded, rebuilt_changes(database_url, name, SUBJECT_PREFIX), through
        )
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def deliveries(database_url: str) -> list[tuple[str, str, str, str, str]]:
    """(campaign, change, status, channel, send id) of every delivery decision."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT campaign_id, change_id, status, channel, send_id FROM campaign_deliveries"
        ).fetchall()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def expected_triggers(
    recorded: list[Published], triggers: Mapping[str, Trigger]
) -> set[tuple[str, str]]:
    """(campaign, change) of every published change that triggers a campaign."""
    return {(c, p.change_id) for c, fires in triggers.items() for p in recorded if fires(p)}


def all_decided(database_url: str, expected: set[tuple[str, str]]) -> bool:
    """Every expected trigger has a delivery decision and none is still to be sent."""
    rows = deliveries(database_url)
    return {(c, ch) for c, ch, *_ in rows} >= expected and all(r[2] in FINAL for r in rows)


def campaign_problems(
    database_url: str,
    expected: set[tuple[str, str]],
    webhook: HttpReceiver,
    *,
    repeated_calls_allowed: int = 0,
) -> list[str]:
    """What campaign did wrong: a trigger decided twice or never, a decision without a
    trigger, an in-app send not once in the inbox, a webhook effect missing or doubled."""
    rows = deliveries(database_url)
    problems = []
    decided = Counter((c, ch) for c, ch, *_ in rows)
    problems += [f"{key} decided {n} times" for key, n in decided.items() if n > 1]
    problems += [f"{key} never decided" for key in expected - set(decided)]
    problems += [f"{key} decided without a trigger" for key in set(decided) - expected]
    problems += [f"{r[:2]} still {r[2]}" for r in rows if r[2] not in FINAL]
    with psycopg.connect(database_url) as conn:
        inbox = Counter(m for (m,) in conn.execute("SELECT message_id FROM campaign_inbox"))
        poison = conn.execute("SELECT count(*) FROM campaign_poison_messages").fetchone()
    sent_in_app = Counter(r[4] for r in rows if r[3] == "in_app" and r[2] == "sent")
    if inbox != sent_in_app:
        problems.append(f"inbox {sum(inbox.values())} messages, {len(sent_in_app)} in-app sends")
    sent_hooks = {r[4] for r in rows if r[3] == "webhook" and r[2] == "sent"}
    if set(webhook.by_key) != sent_hooks:
        problems.append(f"webhook effects {len(webhook.by_key)}, webhook sends {len(sent_hooks)}")
    repeats = {k: n for k, n in webhook.key_counts.items() if n > 1}
    if any(n > 2 for n in repeats.values()) or len(repeats) > repeated_calls_allowed:
        problems.append(f"webhook calls repeated: {repeats}")
    if poison and poison[0]:
        problems.append(f"{poison[0]} changes set aside as poison")
    return problems
