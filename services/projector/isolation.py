"""Isolate the one event a batch fails on, so that no single event can wedge the projection.

`Folder` folds log events one by one and screens each before: an event that holds a
value PostgreSQL can never store is recorded and not folded. A Segment.Built is folded
with its build, loaded from the store (so what was folded before it must be committed:
the runner commits before one, and `Isolation` cuts its parts before one). An event that
does not decode, or that the fold (or loading its build) raises on, raises `FoldFailed`;
a commit refused with a data error raises `CommitFailed` (see `adapters/poison.py` for
what counts as either).

`Isolation` then re-folds the failed stretch from the last commit in parts of about
the square root of its length: a part that commits moves on; a part whose commit fails is
reloaded from the last commit and committed again one event at a time, until one event
fails alone right after a commit (a fold that raises names its event at once). That event
is skipped: an empty commit moves the tracked position past it with its quarantine
record in the same transaction. Each failed attempt costs a reload of the whole state,
so narrowing one event down costs two reloads and about 2 x sqrt(batch) commits, whatever
the size of the batch. If even the empty commit is refused, the failure was not the
event's (`NotIsolated`) and nothing is skipped. Transient failures are raised as they
are, to the projection's retry from its last commit.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from eventsourcing.persistence import Mapper, Notification
from eventsourcing.utils import get_topic

from services.eventlog.events import UserErased
from services.eventlog.keyring import Keyring
from services.eventlog.partition_events import (
    AnonymousHandedOver,
    AppWideFactRelayed,
    EventForwarded,
    SegmentPartitionBuilt,
)
from services.eventlog.partitioned import PartitionLog
from services.eventlog.sealing import key_id_of, open_state, sealed_key_ids, unseal
from services.eventlog.segments import Segment
from services.eventlog.store import EventLog
from services.projector.adapters.poison import condition, describe, refused, screen, transient
from services.projector.adapters.quarantine import (
    FOLD_FAILED,
    REFUSED_BY_DATABASE,
    UNDECODABLE,
    Quarantined,
)
from services.projector.adapters.stored_builds import StoredBuilds
from services.projector.committer import CommitFailed
from services.projector.domain.engine import Engine
from services.projector.partitions.relaying import Relaying
from services.projector.partitions.scope import SINGLE, Scope

# A segment build (of the whole log, or of one partition's share).
BUILT_TOPICS = frozenset({get_topic(Segment.Built), get_topic(SegmentPartitionBuilt)})


class FoldFailed(Exception):
    """Decoding or folding the event at `notification` raised `error` (not transiently)."""

    def __init__(
        self, notification: Notification, event: object | None, reason: str, error: Exception
    ) -> None:
        super().__init__(f"position {notification.id}: {reason}: {error!r}")
        self.notification = notification
        self.event = event
        self.reason = reason
        self.error = error

    @property
    def position(self) -> int:
        return self.notification.id

    def record(self) -> Quarantined:
        what = "does not decode" if self.reason == UNDECODABLE else "the fold raised"
        detail = f"{what}: {condition(self.error)}"
        return describe(self.notification, self.event, self.reason, detail)


class NotIsolated(RuntimeError):
    """Even the commit without the suspected event was refused: nothing was skipped."""


class Folder:
    """Folds log events into an engine one at a time, screening each first. The engine
    and the quarantine see positions that name the partition (`scope`); the notifications,
    and the positions the runner tracks, are the partition's own ids."""

    def __init__(
        self,
        mapper: Mapper[Any],
        builds: StoredBuilds,
        scope: Scope = SINGLE,
        keys: Keyring | None = None,
    ) -> None:
        """`keys`: the keyring that opens sealed personal fields (none: they stay sealed,
        read as erased)."""
        self._mapper = mapper
        self._builds = builds
        self._scope = scope
        self._keys = keys
        self.relaying = Relaying(scope, mapper, keys)

    def prefetch(self, notifications: Sequence[Notification]) -> None:
        """Read the keys of a batch's sealed events at once (the fold then hits the cache)."""
        if self._keys is not None:
            wanted = sealed_key_ids(n.state for n in notifications)
            if wanted:
                self._keys.keys(wanted)

    def decode(self, notification: Notification) -> object:
        """The event (a copy of an app-wide fact: the original)."""
        try:
            event: object = self._mapper.to_domain_event(notification)
            if isinstance(event, AppWideFactRelayed):
                return self.relaying.unwrap(event)
            if isinstance(event, EventForwarded):
                event = self.relaying.unwrap_forwarded(event)
            return self._unsealed(event)
        except Exception as error:
            if transient(error):
                raise
            raise FoldFailed(notification, None, UNDECODABLE, error) from error

    def _unsealed(self, event: object) -> object:
        """The event with its sealed fields opened (erased ones empty)."""
        key_id = key_id_of(event)
        if key_id is not None:
            key = self._keys.keys((key_id,))[key_id] if self._keys is not None else None
            if isinstance(event, AnonymousHandedOver):
                aad = event.originator_id.bytes
                state = open_state(event.state, event.sealed, key, aad)
                return dataclasses.replace(event, state=state, sealed="")
            return unseal(event, key)  # type: ignore[arg-type]
        if isinstance(event, UserErased) and self._keys is not None:
            self._keys.forget(uuid.UUID(k) for k in event.key_ids)
        return event

    def fold(self, engine: Engine, notification: Notification) -> Quarantined | None:
        """Apply one event; its quarantine record instead if it can never be stored."""
        event = self.decode(notification)
        position = self._scope.position(notification.id)
        found = screen(notification, event)
        if found is not None:
            return self.named(found)
        try:
            if isinstance(event, Segment.Built | SegmentPartitionBuilt):
                self._merge_build(engine, event, position)
            else:
                engine.apply(event, position)
        except Exception as error:
            if transient(error):
                raise
            raise FoldFailed(notification, event, FOLD_FAILED, error) from error
        self.relaying.outgoing(notification)
        elsewhere = engine.forwarded()
        if elsewhere is not None:
            self.relaying.forward(notification, elsewhere)
        return None

    def named(self, record: Quarantined) -> Quarantined:
        """The record with the position naming its partition (the quarantine's key)."""
        if self._scope.single:
            return record
        return dataclasses.replace(record, position=self._scope.position(record.position))

    def _merge_build(
        self, engine: Engine, event: Segment.Built | SegmentPartitionBuilt, position: int
    ) -> None:
        request = engine.build_wanted(event)
        history = self._builds.load(request) if request is not None else {}
        engine.merge_build(event, position, history)

    def fold_all(self, engine: Engine, notifications: Sequence[Notification]) -> list[Quarantined]:
        records = []
        for notification in notifications:
            found = self.fold(engine, notification)
            if found is not None:
                records.append(found)
        return records


# Commit what `engine` folded (and these records) with the position; raise CommitFailed.
CommitNow = Callable[[Engine, int, list[Quarantined]], None]


class Isolation:
    def __init__(
        self,
        log: EventLog | PartitionLog,
        folder: Folder,
        resume: Callable[[], Engine],
        commit_now: CommitNow,
        batch_size: int,
    ) -> None:
        self._log = log
        self._folder = folder
        self._resume = resume
        self._commit_now = commit_now
        self._batch_size = batch_size

    def run(self, engine: Engine, after: int, until: int, stop: threading.Event) -> Engine:
        """Fold and commit (after, until] around the events that fail; returns the engine,
        which then holds exactly what is committed."""
        pending = self._read(after, until)
        size = max(1, math.isqrt(len(pending)))
        narrow_until = 0  # inside a part that failed: one event per commit up to here
        cap = 0  # the next part ends before the event the fold raised on
        while pending and not stop.is_set():
            chunk = 1 if pending[0].id <= narrow_until else size
            if cap:
                chunk, cap = min(chunk, cap), 0
            part = self._part(pending, chunk)
            try:
                records = self._folder.fold_all(engine, part)
            except FoldFailed as failed:
                engine = self._resume()  # the failed apply may have half-changed it
                cap = next(i for i, n in enumerate(part) if n.id == failed.position)
                if not cap:
                    self._skip(engine, failed.notification, self._folder.named(failed.record()))
                    pending = pending[1:]
                continue
            try:
                self._commit_now(engine, part[-1].id, records)
            except CommitFailed as failed:
                if not refused(failed.error):
                    raise
                engine = self._resume()
                if len(part) > 1:
                    narrow_until = part[-1].id
                    continue
                self._skip(engine, part[0], self._refused(part[0], failed.error))
                pending = pending[1:]
                continue
            pending = pending[len(part) :]
        return engine

    def _refused(self, notification: Notification, error: BaseException) -> Quarantined:
        event = self._folder.decode(notification)
        detail = f"the database refused its rows: {condition(error)}"
        return self._folder.named(describe(notification, event, REFUSED_BY_DATABASE, detail))

    def _skip(self, engine: Engine, notification: Notification, record: Quarantined) -> None:
        try:
            self._commit_now(engine, notification.id, [record])
        except CommitFailed as failed:
            if refused(failed.error):
                msg = f"the commit without position {notification.id} was refused too"
                raise NotIsolated(msg) from failed.error
            raise

    @staticmethod
    def _part(pending: Sequence[Notification], chunk: int) -> list[Notification]:
        """The next `chunk` events, cut before a segment build (whose merge reads what was
        committed before it)."""
        part = list(pending[:chunk])
        for index in range(1, len(part)):
            if part[index].topic in BUILT_TOPICS:
                return part[:index]
        return part

    def _read(self, after: int, until: int) -> list[Notification]:
        out: list[Notification] = []
        start = after
        while True:
            page = self._log.recorder.select_notifications(
                start=start, limit=self._batch_size, inclusive_of_start=False
            )
            for notification in page:
                if notification.id > until:
                    return out
                out.append(notification)
            if len(page) < self._batch_size:
                return out
            start = page[-1].id
