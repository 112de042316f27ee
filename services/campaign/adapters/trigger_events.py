"""The events behind changes, read from the event log by their client event ids.

A tracked event's log id is uuid5(app, "track", event_id) (see
services.eventlog.events), so a batch of them is one primary-key lookup.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from eventsourcing.persistence import StoredEvent

from services.campaign.domain.ports import TriggerEvent
from services.eventlog.events import EventTracked, event_uuid
from services.eventlog.keyring import Keyring
from services.eventlog.sealing import unseal_all
from services.eventlog.store import EventLog


class LogTriggerEvents:
    def __init__(self, log: EventLog) -> None:
        self._log = log
        recorder = log.log_recorder
        # Sealed properties open with their user's key (erased: the template sees none).
        self._keys = Keyring(recorder.datastore)
        self._select = (
            f"SELECT originator_id, originator_version, topic, state FROM "
            f'"{recorder.datastore.schema}"."{recorder.events_table_name}"'
            " WHERE originator_id = ANY(%s::uuid[]) AND originator_version = 1"
        )

    def _read(self, app_id: str, event_ids: Sequence[str]) -> dict[str, TriggerEvent]:
        ids = [event_uuid(app_id, EventTracked.KIND, e) for e in event_ids]
        with self._log.log_recorder.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._select, (ids,))  # type: ignore[arg-type]
            rows = curs.fetchall()
        out: dict[str, TriggerEvent] = {}
        events = []
        for row in rows:
            stored = StoredEvent(
                originator_id=row["originator_id"],
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=bytes(row["state"]),
            )
            events.append(self._log.mapper.to_domain_event(stored))
        for event in unseal_all(events, self._keys):
            if isinstance(event, EventTracked):
                out[event.event_id] = TriggerEvent(
                    event.event_id, event.name, event.event_time_us, dict(event.properties)
                )
        return out

    async def events(self, app_id: str, event_ids: Sequence[str]) -> dict[str, TriggerEvent]:
        if not event_ids:
            return {}
        return await asyncio.to_thread(self._read, app_id, event_ids)
