"""The change stream for the live page: one ordered, ephemeral JetStream consumer per
watcher, filtered to one app's subjects, starting at new messages.

Every message is checked again against the app (its header's app_id): a subject
filter alone would let an app named "a" see an app named "a.b".
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import nats
from cohortflow.changes.v1 import changes_pb2
from cohortflow.types.v1 import types_pb2
from google.protobuf.message import DecodeError
from nats.js.api import DeliverPolicy

from services.common.jetstream import TYPE_HEADER, ChangeStreamSettings, ChangeSubjects, connect

_TYPES: dict[str, Any] = {
    "cohortflow.changes.v1.LifecycleChanged": changes_pb2.LifecycleChanged,
    "cohortflow.changes.v1.RfmGroupChanged": changes_pb2.RfmGroupChanged,
    "cohortflow.changes.v1.MembershipChanged": changes_pb2.MembershipChanged,
}


def _name(enum: Any, number: int, prefix: str) -> str:
    return enum.Name(number).removeprefix(prefix).lower() if number else "none"


def describe(message: Any) -> dict[str, Any]:
    """A change as the live page shows it."""
    h = message.header
    out: dict[str, Any] = {
        "change_id": h.change_id,
        "user_id": h.user_id,
        "cause": changes_pb2.Cause.Kind.Name(h.cause.kind).removeprefix("KIND_").lower(),
        "event": h.cause.event_name,
        "time": h.effective_time.ToJsonString() if h.HasField("effective_time") else "",
        "position": h.position,
        "correction": h.correction,
    }
    if isinstance(message, changes_pb2.MembershipChanged):
        entered = message.direction == changes_pb2.MembershipChanged.DIRECTION_ENTERED
        out.update(
            kind="segment", change=f"{'entered' if entered else 'left'} {message.segment_id}"
        )
    elif isinstance(message, changes_pb2.LifecycleChanged):
        states = types_pb2.LifecycleState
        from_, to = (
            _name(states, n, "LIFECYCLE_STATE_") for n in (message.from_state, message.to_state)
        )
        out.update(kind="lifecycle", change=f"{from_} → {to}")
    else:
        groups = types_pb2.RfmGroup
        from_, to = (_name(groups, n, "RFM_GROUP_") for n in (message.from_group, message.to_group))
        out.update(kind="rfm", change=f"{from_} → {to}")
    return out


class ChangeFeed:
    """Tails the change stream for watchers of one app each."""

    def __init__(self, nats_url: str, streams: ChangeStreamSettings) -> None:
        self._url = nats_url
        self._streams = streams
        self._subjects = ChangeSubjects(streams.subject_prefix)
        self._nc: nats.NATS | None = None
        self._lock = asyncio.Lock()

    async def _connection(self) -> nats.NATS:
        async with self._lock:
            if self._nc is None or self._nc.is_closed:
                self._nc = await connect(self._url, "cohortflow-console")
            return self._nc

    async def watch(self, app_id: str) -> AsyncIterator[dict[str, Any]]:
        """Subscribe now; the changes of `app_id` from now on, as they are published."""
        nc = await self._connection()
        sub = await nc.jetstream().subscribe(
            self._subjects.app(app_id),
            stream=self._streams.stream,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
            idle_heartbeat=5.0,
        )
        return self._changes(sub, app_id)

    @staticmethod
    async def _changes(sub: Any, app_id: str) -> AsyncIterator[dict[str, Any]]:
        try:
            async for msg in sub.messages:
                kind = _TYPES.get((msg.headers or {}).get(TYPE_HEADER, ""))
                if kind is None:
                    continue
                try:
                    message = kind.FromString(msg.data)
                except DecodeError:
                    continue
                if message.header.app_id != app_id:
                    continue
                yield describe(message)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            with contextlib.suppress(Exception):
                await self._nc.drain()
