"""The events behind changes, read from the event log by their client event ids.

A tracked event's log id is uuid5(app, "track", event_id) (see
services.eventlog.events), so a batch of them is one primary-key lookup per
partition. An event is looked for in the partition of the user it was for, then
(if not there: an anonymous history handed over, or forwarded) in every other.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping

from eventsourcing.persistence import StoredEvent

from services.campaign.domain.ports import TriggerEvent
from services.eventlog.events import EventTracked, event_uuid
from services.eventlog.keyring import Keyring
from services.eventlog.partitioned import PartitionedLog
from services.eventlog.sealing import unseal_all
from services.eventlog.store import LogRecorder


def _select(recorder: LogRecorder) -> str:
    return (
        f"SELECT originator_id, originator_version, topic, state FROM "
        f'"{recorder.datastore.schema}"."{recorder.events_table_name}"'
        " WHERE originator_id = ANY(%s::uuid[]) AND originator_version = 1"
    )


class LogTriggerEvents:
    def __init__(self, log: PartitionedLog) -> None:
        self._log = log
        # Sealed properties open with their user's key (erased: the template sees none).
        self._keys = Keyring(log.home.log_recorder.datastore)

    def _stored(self, partition: int, ids: list[uuid.UUID]) -> list[StoredEvent]:
        recorder = self._log.recorder(partition)
        with recorder.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(_select(recorder), (ids,))  # type: ignore[arg-type]
            rows = curs.fetchall()
        return [
            StoredEvent(
                originator_id=row["originator_id"],
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=bytes(row["state"]),
            )
            for row in rows
        ]

    def _find(self, app_id: str, users: Mapping[str, str]) -> list[StoredEvent]:
        """The stored events, each from its user's partition first, then from the others."""
        by_partition: dict[int, list[uuid.UUID]] = {}
        for event_id, user_id in users.items():
            partition = self._log.deployment.partition_of(app_id, user_id)
            by_partition.setdefault(partition, []).append(
                event_uuid(app_id, EventTracked.KIND, event_id)
            )
        found: list[StoredEvent] = []
        for partition, ids in by_partition.items():
            found += self._stored(partition, ids)
        missing = {u for ids in by_partition.values() for u in ids}
        missing -= {s.originator_id for s in found}
        for partition in range(self._log.partitions):
            rest = sorted(missing - set(by_partition.get(partition, ())))
            if rest:
                more = self._stored(partition, rest)
                found += more
                missing -= {s.originator_id for s in more}
        return found

    def _read(self, app_id: str, users: Mapping[str, str]) -> dict[str, TriggerEvent]:
        events = [self._log.mapper.to_domain_event(s) for s in self._find(app_id, users)]
        out: dict[str, TriggerEvent] = {}
        for event in unseal_all(events, self._keys):
            if isinstance(event, EventTracked):
                out[event.event_id] = TriggerEvent(
                    event.event_id, event.name, event.event_time_us, dict(event.properties)
                )
        return out

    async def events(self, app_id: str, users: Mapping[str, str]) -> dict[str, TriggerEvent]:
        if not users:
            return {}
        return await asyncio.to_thread(self._read, app_id, users)
