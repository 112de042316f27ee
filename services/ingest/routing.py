"""Route each event to its user's partition; one micro-batching appender per partition.

A call's events are grouped by partition and appended to all of them at once; the call
returns when every group is committed, with positions that name their partition. With
one partition this is the single appender, untouched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent

from services.eventlog.events import UserIdentified
from services.eventlog.partitioned import PartitionedLog
from services.eventlog.partitions import ANONYMOUS_PREFIX, Deployment, encode_position
from services.eventlog.store import AppendOutcome, append_new
from services.ingest.adapters.identity_links import IdentityLinks
from services.ingest.appender import Appended, Appender
from services.ingest.sealer import Sealer


def partition_for(
    deployment: Deployment,
    app_id: str,
    user_id: str,
    anonymous_id: str,
    links: Mapping[tuple[str, str], str],
) -> int:
    """The partition of an event: its user's, else the user its anonymous id is linked
    to (`links`: (app, anonymous id) -> user id), else the anonymous id's own."""
    user = user_id or links.get((app_id, anonymous_id))
    return deployment.partition_of(app_id, user if user else ANONYMOUS_PREFIX + anonymous_id)


class PartitionWriter:
    """One partition of the log as the appender's LogWriter (positions name the partition)."""

    def __init__(self, log: PartitionedLog, partition: int) -> None:
        self._log = log
        self._partition = partition
        self._recorder = log.recorder(partition)

    def encode(self, event: Any) -> StoredEvent:
        return self._log.encode(event)

    def append_new(self, stored: Sequence[StoredEvent]) -> AppendOutcome:
        outcome = append_new(self._recorder, stored)
        p = self._partition
        return AppendOutcome(
            inserted={k: encode_position(p, v) for k, v in outcome.inserted.items()},
            duplicates={k: encode_position(p, v) for k, v in outcome.duplicates.items()},
        )


class PartitionedAppender:
    def __init__(
        self,
        log: PartitionedLog,
        appenders: Sequence[Appender],
        links: IdentityLinks | None,
        sealer: Sealer | None = None,
    ) -> None:
        """`sealer`: seals the personal fields of each event with its user's key first."""
        self._log = log
        self._appenders = list(appenders)
        self._links = links
        self._sealer = sealer

    async def append(self, events: Sequence[Any]) -> list[Appended]:
        """Store events (once each) in their partitions; their positions, in order."""
        if self._sealer is not None and events:
            events = await self._sealer.seal(events)
        if len(self._appenders) == 1:
            return await self._appenders[0].append(events)
        partitions = await self._route(events)
        groups: dict[int, list[int]] = {}
        for index, partition in enumerate(partitions):
            groups.setdefault(partition, []).append(index)
        done = await asyncio.gather(
            *(
                self._appenders[p].append([events[i] for i in indexes])
                for p, indexes in groups.items()
            )
        )
        results: list[Appended | None] = [None] * len(events)
        for indexes, appended in zip(groups.values(), done, strict=True):
            for index, outcome in zip(indexes, appended, strict=True):
                results[index] = outcome
        return results  # type: ignore[return-value]

    async def _route(self, events: Sequence[Any]) -> list[int]:
        deployment = self._log.deployment
        anonymous = {(e.app_id, e.anonymous_id) for e in events if not e.user_id}
        links: dict[tuple[str, str], str] = {}
        if anonymous and self._links is not None:
            links = await asyncio.to_thread(self._links.lookup, anonymous)
        linking = [
            e for e in events if isinstance(e, UserIdentified) and e.user_id and e.anonymous_id
        ]
        if linking and self._links is not None:
            await asyncio.to_thread(self._record_links, linking)
        return [
            partition_for(deployment, event.app_id, event.user_id, event.anonymous_id, links)
            for event in events
        ]

    def _record_links(self, events: list[UserIdentified]) -> None:
        assert self._links is not None
        for event in events:
            self._links.record(event.app_id, event.anonymous_id, event.user_id)

    async def drain(self) -> None:
        await asyncio.gather(*(a.drain() for a in self._appenders))

    async def close(self) -> None:
        await asyncio.gather(*(a.close() for a in self._appenders))
