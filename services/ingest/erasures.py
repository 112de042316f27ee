"""Erasing a user (PrivacyService.EraseUser): destroy their keys, audit, tell the log.

The keyring destroys the keys of the user and of the anonymous ids linked to them and
writes the audit record in one transaction (keyring.py); then UserErased is appended to
the user's partition and to that of each erased anonymous id (whatever a partition still
holds of them is erased by its fold). The event's id comes from the request id, so a
retry after a failed append stores it once, and the keyring answers a repeated request
with the erasure it recorded.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from services.eventlog.events import UserErased, datetime_to_us, erasure_uuid
from services.eventlog.keyring import Erasure, Keyring
from services.eventlog.partitioned import PartitionedLog
from services.eventlog.partitions import ANONYMOUS_PREFIX, encode_position


@dataclass(frozen=True)
class Erased:
    erasure: Erasure
    # Position of UserErased in the user's partition.
    position: int

    @property
    def anonymous_ids(self) -> list[str]:
        return [
            s[len(ANONYMOUS_PREFIX) :]
            for s in self.erasure.subjects
            if s.startswith(ANONYMOUS_PREFIX)
        ]


class Erasures:
    def __init__(self, keyring: Keyring, log: PartitionedLog) -> None:
        self._keyring = keyring
        self._log = log

    def erase(self, app_id: str, user_id: str, requested_by: str, request_id: str) -> Erased:
        """Erase `user_id` of `app_id` (blocking; run it off the event loop). Raises
        keyring.RequestReused if `request_id` erased another user."""
        request_id = request_id or str(uuid.uuid4())
        erasure = self._keyring.erase(app_id, user_id, request_id, requested_by)
        event = UserErased(
            originator_id=erasure_uuid(app_id, request_id),
            originator_version=1,
            app_id=app_id,
            user_id=user_id,
            request_id=request_id,
            requested_by=requested_by,
            erased_time_us=datetime_to_us(erasure.requested_at),
            key_ids=[k.hex for k in erasure.key_ids],
            subjects=list(erasure.subjects),
        )
        deployment = self._log.deployment
        home = deployment.partition_of(app_id, user_id)
        partitions = {home} | {deployment.partition_of(app_id, s) for s in erasure.subjects}
        stored = self._log.encode(event)
        position = 0
        for partition in sorted(partitions):
            appended = self._log.append(partition, [stored])
            if partition == home:
                position = encode_position(home, appended.outcome.position(event.originator_id)[0])
        return Erased(erasure, position)
