"""Seal the personal fields of events before they are appended (see eventlog/sealing.py).

Keys come from the keyring: one per (app, subject), created on first use. An Identify that
names both a user and an anonymous id also records that the anonymous id's key belongs
to the user, so erasing the user erases the anonymous history too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from typing import Any

from services.eventlog.events import EventTracked, UserIdentified
from services.eventlog.keyring import Keyring, Subject
from services.eventlog.partitions import ANONYMOUS_PREFIX
from services.eventlog.sealing import DEFAULT_CLEAR_PROPERTIES, seal, subject_of


class Sealer:
    def __init__(
        self, keyring: Keyring, clear_properties: Collection[str] = DEFAULT_CLEAR_PROPERTIES
    ) -> None:
        self._keyring = keyring
        self._clear = frozenset(clear_properties)

    def seal_all(self, events: Sequence[Any]) -> list[Any]:
        """The events as stored: user events sealed, any other as it is (None stays None)."""
        subjects: set[Subject] = set()
        owners: dict[Subject, str] = {}
        for event in events:
            if isinstance(event, EventTracked | UserIdentified):
                subjects.add((event.app_id, subject_of(event)))
                if isinstance(event, UserIdentified) and event.user_id and event.anonymous_id:
                    owners[(event.app_id, ANONYMOUS_PREFIX + event.anonymous_id)] = event.user_id
        if not subjects:
            return list(events)
        keys = self._keyring.active_keys(subjects, owners)
        out = []
        for event in events:
            if isinstance(event, EventTracked | UserIdentified):
                key_id, key = keys[(event.app_id, subject_of(event))]
                event = seal(event, key_id, key, self._clear)
            out.append(event)
        return out

    async def seal(self, events: Sequence[Any]) -> list[Any]:
        """`seal_all` off the event loop (it may read and create keys)."""
        return await asyncio.to_thread(self.seal_all, events)
