"""App-wide facts reach every partition: partition 0 relays them, the others unwrap them.

Segment definitions (and archives) are saved in partition 0's log, where the segment
aggregates live, and RFM cut points are recorded there. Partition 0's fold mails a copy of
each to every other partition (in the batch's transaction); each partition folds the copy
as the original, at its own position, and remembers the highest partition-0 position it
has folded a copy of (`relayed_through`): a read waiting for a definition waits until
every partition has it.
"""

from __future__ import annotations

import uuid
from typing import Any

from eventsourcing.persistence import Mapper, Notification, StoredEvent
from eventsourcing.utils import get_topic

from services.eventlog.keyring import Keyring
from services.eventlog.partition_events import (
    AnonymousHandedOver,
    AnonymousLinked,
    AppWideFactRelayed,
    EventForwarded,
    RfmCutPointsRecorded,
    mail_uuid,
)
from services.eventlog.partitions import ANONYMOUS_PREFIX, partition_of
from services.eventlog.sealing import seal_state
from services.eventlog.segments import Segment
from services.projector.domain.changeset import Elsewhere
from services.projector.partitions.mail import Mail
from services.projector.partitions.scope import Scope

# The facts every partition must fold (not Segment.Built: each partition builds its own).
APP_WIDE_TOPICS = frozenset(
    get_topic(cls)
    for cls in (Segment.Defined, Segment.Redefined, Segment.Archived, RfmCutPointsRecorded)
)
RELAYED_TOPIC = get_topic(AppWideFactRelayed)


class Relaying:
    """One partition's side of relaying: what it sends (partition 0) and what it has
    folded of partition 0's facts (every other partition)."""

    def __init__(self, scope: Scope, mapper: Mapper[Any], keys: Keyring | None = None) -> None:
        """`keys`: seals the personal part of a handed-over state (the anonymous id's key)."""
        self._scope = scope
        self._mapper = mapper
        self._keys = keys
        self.relayed_through = 0
        self.sent: list[int] = []  # partition 0: positions of the facts relayed since a drain
        self._mail: list[Mail] = []

    def _sealed_state(
        self, app_id: str, anonymous_id: str, state: dict[str, Any], event_id: uuid.UUID
    ) -> tuple[dict[str, Any], str]:
        if self._keys is None:
            return state, ""
        subject = (app_id, ANONYMOUS_PREFIX + anonymous_id)
        key_id, key = self._keys.active_keys([subject])[subject]
        return seal_state(state, key_id, key, event_id.bytes)

    def reset(self, relayed_through: int) -> None:
        """Back to what is committed (after a resume)."""
        self.relayed_through = relayed_through
        self.sent = []
        self._mail = []

    def outgoing(self, notification: Notification) -> None:
        """Partition 0 folded `notification`: if it is app-wide, mail it to the others."""
        if self._scope.partition != 0 or self._scope.single:
            return
        if notification.topic not in APP_WIDE_TOPICS:
            return
        self.sent.append(notification.id)
        for target in range(1, self._scope.partitions):
            relayed = AppWideFactRelayed(
                originator_id=mail_uuid(
                    "relayed", notification.originator_id, notification.originator_version, target
                ),
                originator_version=1,
                origin_position=notification.id,
                origin_id=str(notification.originator_id),
                origin_version=notification.originator_version,
                topic=notification.topic,
                state=notification.state.decode(),
            )
            self._mail.append(Mail(target, self._mapper.to_stored_event(relayed)))

    def news(self, elsewhere: list[Elsewhere]) -> None:
        """Identity news of this partition's fold for the partitions they concern."""
        for item in elsewhere:
            if item.kind == "link":
                target = self._partition_of(item.app_id, ANONYMOUS_PREFIX + item.anonymous_id)
                event: AnonymousLinked | AnonymousHandedOver = AnonymousLinked(
                    originator_id=mail_uuid(
                        "link",
                        self._scope.partition,
                        item.position,
                        item.app_id,
                        item.anonymous_id,
                    ),
                    originator_version=1,
                    app_id=item.app_id,
                    anonymous_id=item.anonymous_id,
                    user_id=item.user_id,
                    linked_us=item.linked_us,
                    event_id=item.event_id,
                    event_time_us=item.event_time_us,
                )
            else:
                target = self._partition_of(item.app_id, item.user_id)
                event_id = mail_uuid(
                    "hand_over",
                    self._scope.partition,
                    item.position,
                    item.app_id,
                    item.anonymous_id,
                )
                state, sealed = self._sealed_state(
                    item.app_id, item.anonymous_id, item.state or {}, event_id
                )
                event = AnonymousHandedOver(
                    originator_id=event_id,
                    originator_version=1,
                    app_id=item.app_id,
                    anonymous_id=item.anonymous_id,
                    user_id=item.user_id,
                    state=state,
                    linked_us=item.linked_us,
                    event_id=item.event_id,
                    event_time_us=item.event_time_us,
                    sealed=sealed,
                )
            self._mail.append(Mail(target, self._mapper.to_stored_event(event)))

    def forward(self, notification: Notification, key: tuple[str, str]) -> None:
        """The event of `notification` is another partition's user's: send it on."""
        app_id, user_id = key
        forwarded = EventForwarded(
            originator_id=mail_uuid("forward", notification.originator_id),
            originator_version=1,
            app_id=app_id,
            user_id=user_id,
            origin_id=str(notification.originator_id),
            topic=notification.topic,
            state=notification.state.decode(),
        )
        target = self._partition_of(app_id, user_id)
        self._mail.append(Mail(target, self._mapper.to_stored_event(forwarded)))

    def _partition_of(self, app_id: str, key: str) -> int:
        return partition_of(app_id, key, self._scope.partitions)

    def unwrap_forwarded(self, forwarded: EventForwarded) -> object:
        """The event a partition sent on to its user's partition."""
        return self._mapper.to_domain_event(
            StoredEvent(
                originator_id=uuid.UUID(forwarded.origin_id),
                originator_version=1,
                topic=forwarded.topic,
                state=forwarded.state.encode(),
            )
        )

    def unwrap(self, relayed: AppWideFactRelayed) -> object:
        """The original fact of a copy (decoded as partition 0 decodes it)."""
        self.relayed_through = max(self.relayed_through, relayed.origin_position)
        return self._mapper.to_domain_event(
            StoredEvent(
                originator_id=uuid.UUID(relayed.origin_id),
                originator_version=relayed.origin_version,
                topic=relayed.topic,
                state=relayed.state.encode(),
            )
        )

    def drain(self) -> tuple[list[Mail], list[int]]:
        """The letters and the relayed positions since the last drain."""
        mail, sent = self._mail, self.sent
        self._mail, self.sent = [], []
        return mail, sent
