"""Determinism check: what was published equals what a replay of the log produces.

    record = await stream_mark(nats_url, settings)        # before the traffic
    ... traffic (the simulator through ingest) ...
    head = await wait_settled(database_url)               # live projector caught up, published
    recorded = await read_changes(nats_url, settings, record)
    rebuild(database_url, schema, policies, until=head)   # services.projector.rebuild
    result = compare(recorded, rebuilt_changes(database_url, schema, head))

The recording is the change stream itself (JetStream keeps it): every message
published after the mark, in stream order, as subscribers saw it. The replay is a
full rebuild from the log into a fresh schema, whose outbox holds the changes it
would have published. Both are decoded and compared message by message (subject
after its prefix, change id, type, every field); the first difference is named.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import nats
import psycopg
from cohortflow.changes.v1 import changes_pb2
from google.protobuf import json_format
from google.protobuf.message import Message
from nats.js.api import ConsumerConfig, DeliverPolicy
from psycopg import sql

from services.common.jetstream import MSG_ID_HEADER, TYPE_HEADER, ChangeStreamSettings
from services.eventlog.store import LOG_NAME, open_event_log
from services.projector import schema

_TYPES: dict[str, type[Message]] = {
    cls.DESCRIPTOR.full_name: cls
    for cls in (
        changes_pb2.LifecycleChanged,
        changes_pb2.RfmGroupChanged,
        changes_pb2.MembershipChanged,
    )
}


@dataclass(frozen=True)
class Published:
    """One change message: subject without its prefix, id, type and the decoded message."""

    subject: str
    change_id: str
    type_name: str
    message: Message

    @property
    def position(self) -> int:
        return int(self.message.header.position)  # type: ignore[attr-defined]

    @classmethod
    def of(
        cls, subject: str, prefix: str, change_id: str, type_name: str, data: bytes
    ) -> Published:
        message_class = _TYPES.get(type_name)
        if message_class is None:
            msg = f"change {change_id} on {subject} has an unknown type {type_name!r}"
            raise ValueError(msg)
        message = message_class()
        message.ParseFromString(data)
        return cls(subject.removeprefix(prefix + "."), change_id, type_name, message)


@dataclass(frozen=True)
class Mark:
    """Where the change stream stood before the traffic: its last sequence number."""

    stream: str
    last_sequence: int


async def stream_mark(nats_url: str, settings: ChangeStreamSettings) -> Mark:
    nc = await nats.connect(nats_url, name="cohortflow-replay-check")
    try:
        info = await nc.jetstream().stream_info(settings.stream)
        return Mark(settings.stream, info.state.last_seq)
    finally:
        await nc.close()


async def read_changes(
    nats_url: str, settings: ChangeStreamSettings, mark: Mark, *, idle_s: float = 2.0
) -> list[Published]:
    """Every change published on the stream after `mark`, in stream order."""
    nc = await nats.connect(nats_url, name="cohortflow-replay-check")
    out: list[Published] = []
    try:
        js = nc.jetstream()
        last = (await js.stream_info(mark.stream)).state.last_seq
        if last <= mark.last_sequence:
            return out
        subscription = await js.pull_subscribe(
            f"{settings.subject_prefix}.>",
            durable=None,
            stream=mark.stream,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=mark.last_sequence + 1,
                inactive_threshold=60.0,
            ),
        )
        try:
            seen = mark.last_sequence
            while seen < last:
                try:
                    batch = await subscription.fetch(1000, timeout=idle_s)
                except nats.errors.TimeoutError:
                    break
                for msg in batch:
                    headers = msg.headers or {}
                    out.append(
                        Published.of(
                            msg.subject,
                            settings.subject_prefix,
                            headers.get(MSG_ID_HEADER, ""),
                            headers.get(TYPE_HEADER, ""),
                            msg.data,
                        )
                    )
                    seen = max(seen, msg.metadata.sequence.stream)
                    await msg.ack()
        finally:
            await subscription.unsubscribe()
    finally:
        await nc.close()
    return out


def log_head(database_url: str) -> int:
    log = open_event_log(database_url, pool_size=1)
    try:
        return log.head_position()
    finally:
        log.close()


def live_progress(database_url: str) -> tuple[int, int]:
    """(live projector position, changes still in its outbox)."""
    with psycopg.connect(database_url) as conn:
        done = conn.execute(
            sql.SQL("SELECT notification_id FROM public.{} WHERE application_name = %s").format(
                sql.Identifier(schema.TRACKING_TABLE)
            ),
            (LOG_NAME,),
        ).fetchone()
        pending = conn.execute(
            sql.SQL("SELECT count(*) FROM public.{}").format(sql.Identifier(schema.OUTBOX_TABLE))
        ).fetchone()
    return int(done[0] if done else 0), int(pending[0] if pending else 0)


async def wait_settled(database_url: str, *, timeout_s: float = 600.0) -> int:
    """The log head once the live projector has folded it and published every change."""
    deadline = time.monotonic() + timeout_s
    head = await asyncio.to_thread(log_head, database_url)
    while True:
        done, pending = await asyncio.to_thread(live_progress, database_url)
        if done >= head and pending == 0:
            return head
        if time.monotonic() > deadline:
            msg = (
                f"the live projector did not settle in {timeout_s:.0f} s (at position {done:,}"
                f" of {head:,}, {pending:,} changes not yet published): is it running?"
            )
            raise TimeoutError(msg)
        await asyncio.sleep(0.2)


def rebuilt_changes(
    database_url: str, schema_name: str, prefix: str, partition: int = 0
) -> Iterator[Published]:
    """The changes a rebuild into `schema_name` produced (of `partition`; all of them in
    a one-partition deployment), in the order it would publish."""
    with psycopg.connect(database_url) as conn:
        cursor = conn.cursor(name="rebuilt_outbox")
        cursor.execute(
            sql.SQL(
                "SELECT subject, msg_id, msg_type, payload FROM {}.{} WHERE partition = %s"
                " ORDER BY id"
            ).format(sql.Identifier(schema_name), sql.Identifier(schema.OUTBOX_TABLE)),
            (partition,),
        )
        while rows := cursor.fetchmany(5000):
            for subject, msg_id, msg_type, payload in rows:
                yield Published.of(subject, prefix, msg_id, msg_type, bytes(payload))


@dataclass(frozen=True)
class Comparison:
    recorded: int
    compared: int
    first_position: int
    through_position: int
    first_difference: str | None

    @property
    def identical(self) -> bool:
        return self.first_difference is None


def compare(
    recorded: list[Published], rebuilt: Iterable[Published], through_position: int
) -> Comparison:
    """The recorded changes (up to `through_position`) against the same stretch of the replay.

    The recording starts mid-history (at the mark); the replay from the very beginning,
    so the replay is aligned at the recording's first change, then both must agree one
    by one to the end.
    """
    wanted = [p for p in recorded if p.position <= through_position]
    first = wanted[0].position if wanted else 0

    def result(compared: int, difference: str | None) -> Comparison:
        return Comparison(len(wanted), compared, first, through_position, difference)

    replay = iter(p for p in rebuilt if p.position <= through_position)
    if not wanted:
        return result(0, None)
    for candidate in replay:
        if candidate.change_id == wanted[0].change_id:
            break
    else:
        return result(
            0,
            f"the replay never produced the first recorded change {wanted[0].change_id}"
            f" ({wanted[0].subject}, position {wanted[0].position})",
        )
    compared = 0
    current: Published | None = candidate
    for live in wanted:
        if compared:
            current = next(replay, None)
        if current is None:
            return result(
                compared,
                f"change #{compared + 1} {live.change_id} ({live.subject}, position"
                f" {live.position}) was published but the replay ends before it",
            )
        difference = _difference(live, current)
        if difference:
            return result(compared, f"change #{compared + 1}: {difference}")
        compared += 1
    extra = next(replay, None)
    if extra is not None:
        return result(
            compared,
            f"the replay has a change that was never published: {extra.change_id}"
            f" ({extra.subject}, position {extra.position})",
        )
    return result(compared, None)


def _difference(live: Published, replayed: Published) -> str | None:
    if live.change_id != replayed.change_id:
        return (
            f"published {live.change_id} ({live.subject}, position {live.position}),"
            f" replay {replayed.change_id} ({replayed.subject}, position {replayed.position})"
        )
    if (live.subject, live.type_name) != (replayed.subject, replayed.type_name):
        return (
            f"{live.change_id}: published as {live.type_name} on {live.subject},"
            f" replayed as {replayed.type_name} on {replayed.subject}"
        )
    if live.message == replayed.message:
        return None
    a = json_format.MessageToDict(live.message, preserving_proto_field_name=True)
    b = json_format.MessageToDict(replayed.message, preserving_proto_field_name=True)
    fields = "; ".join(
        f"{path}: published={x!r} replay={y!r}" for path, x, y in _diff_fields(a, b, "")
    )
    return f"{live.change_id} ({live.subject}, position {live.position}) differs: {fields}"


def _diff_fields(a: object, b: object, path: str) -> Iterator[tuple[str, object, object]]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            yield from _diff_fields(a.get(key), b.get(key), f"{path}.{key}" if path else key)
    elif a != b:
        yield path, a, b
