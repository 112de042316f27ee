"""The projection loop: follow the log, fold batches, commit each with its position.

Runs in a thread (the event store API is synchronous). A failure discards the
in-memory state and resumes from the last commit, so a failed batch is simply done
again: the commit of state and position is atomic. A failure that may be tied to one
event (the fold raised on it, or the commit was refused with a data error) is first
narrowed to that event, which is quarantined and skipped (see isolation.py); any other
failure (the database is down, a connection was lost) is retried with a backoff, and
health says NOT_SERVING until a commit succeeds again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog
from prometheus_client import Gauge

from services.eventlog.keyring import Keyring
from services.eventlog.partitioned import PartitionLog
from services.eventlog.partitions import partition_of
from services.eventlog.store import EventLog
from services.projector import metrics
from services.projector.adapters.follower import LogFollower
from services.projector.adapters.poison import (
    UNENCODABLE_VALUE_ERRORS,
    UnencodableRows,
    refused,
)
from services.projector.adapters.quarantine import Quarantined, QuarantineQueries
from services.projector.adapters.store import ProjectorStore, Relayed
from services.projector.adapters.stored_builds import StoredBuilds
from services.projector.committer import CommitFailed, Committer, Prepared, commit
from services.projector.domain.engine import Engine
from services.projector.domain.fold_state import PolicySource
from services.projector.isolation import BUILT_TOPICS, Folder, FoldFailed, Isolation
from services.projector.lock import LockLost, ProjectorLock
from services.projector.partitions import metrics as pm

_log = structlog.get_logger("projector")


class Projection:
    """Folds one partition of the log (the store's scope) into its read models."""

    def __init__(
        self,
        log: EventLog | PartitionLog,
        store: ProjectorStore,
        follower: LogFollower,
        policies: PolicySource,
        on_commit: Callable[[], None] = lambda: None,
        on_health: Callable[[bool], None] = lambda healthy: None,
        keys: Keyring | None = None,
    ) -> None:
        """`keys`: the keyring of the home database (default: the log's own database)."""
        self._log = log
        self._store = store
        self._follower = follower
        self._policies = policies
        self._on_commit = on_commit
        self._on_health = on_health
        self._quarantine = QuarantineQueries(store)
        self.scope = store.scope
        keyring = keys if keys is not None else Keyring(log.log_recorder.datastore)
        self._folder = Folder(log.mapper, StoredBuilds(store), store.scope, keyring)
        self.position = 0
        # The last notification id handed to the committer: where the next batch starts.
        self._prepared_through = 0
        self.healthy = True
        self._progressed = False  # a commit since the last failure
        self._backoff_s = 0.5
        self.ready = threading.Event()
        self._lock: ProjectorLock | None = None

    def run(self, stop: threading.Event, lock: ProjectorLock | None = None) -> None:
        """Project until `stop`. With `lock`, first become the only projector of that
        database (others wait as standbys), and make sure of it again at every resume."""
        self._lock = lock
        try:
            self._run(stop)
        finally:
            if lock is not None:
                lock.release()

    def _run(self, stop: threading.Event) -> None:
        suspect = 0  # isolate the events up to here before following normally again
        while not stop.is_set():
            try:
                if self._lock is not None and not self._lock.acquire(stop):
                    return  # stopped while waiting as a standby
                engine = self._resume()
                if suspect:
                    isolation = Isolation(
                        self._log,
                        self._folder,
                        self._resume,
                        self._commit_now,
                        self._follower.batch_size,
                    )
                    engine = isolation.run(engine, self.position, suspect, stop)
                    suspect = 0
                self._follow(engine, stop)
            except LockLost:
                _log.warning("the projector lock was lost; taking it again before projecting")
            except (FoldFailed, CommitFailed) as failure:
                if isinstance(failure, CommitFailed) and not refused(failure.error):
                    self._failed(failure.error, stop)
                    continue
                # Maybe one event's fault: narrow it down at once (the database works).
                suspect = max(suspect, failure.position)
                self._health(False)
                _log.warning(
                    "a batch failed; isolating the event it fails on",
                    through_position=failure.position,
                    error=repr(failure.error),
                )
            except Exception as error:
                self._failed(error, stop)

    def _failed(self, error: BaseException, stop: threading.Event) -> None:
        """Wait before resuming from the last commit: 0.5 s after a failure that follows a
        commit, doubling (up to 10 s) while nothing commits."""
        self._health(False)
        metrics.BATCH_FAILURES.inc()
        _log.error("projection failed; resuming from the last commit", error=repr(error))
        if self._progressed:
            self._progressed = False
            self._backoff_s = 0.5
        wait, self._backoff_s = self._backoff_s, min(self._backoff_s * 2, 10.0)
        stop.wait(wait)

    def _health(self, healthy: bool) -> None:
        if healthy != self.healthy:
            self.healthy = healthy
            metrics.STALLED.set(0 if healthy else 1)
            _log.info("projection health", committing=healthy)
            self._on_health(healthy)

    def _resume(self) -> Engine:
        """A fresh engine holding exactly what is committed (and its position)."""
        scope = self.scope
        engine = Engine(
            self._policies,
            facts=True,
            require_builds=True,
            local=None
            if scope.single
            else lambda app, key: partition_of(app, key, scope.partitions) == scope.partition,
            rfm_recorded=not scope.single,
        )
        started = time.perf_counter()
        self.position = self._prepared_through = self._store.load(engine)
        if not self.scope.single:
            self._folder.relaying.reset(self._store.relayed_through())
        self._gauge(metrics.POSITION, pm.PARTITION_POSITION, self.position)
        metrics.QUARANTINED.set(self._quarantine.count())
        _log.info(
            "resumed",
            position=self.position,
            users=len(engine.users),
            seconds=round(time.perf_counter() - started, 3),
        )
        head = self._log.head_position()
        self._gauge(metrics.HEAD, pm.PARTITION_HEAD, head)
        # True from the start, not after 1 s.
        self._gauge(metrics.LAG, pm.PARTITION_LAG, max(0, head - self.position))
        if head <= self.position:
            self._health(True)  # nothing to commit: nothing that fails
        self.ready.set()
        return engine

    def _committed(self, item: Prepared) -> None:
        """After a commit (on the committing thread)."""
        self.position = item.position
        self._progressed = True
        metrics.EVENTS.inc(item.events)
        metrics.BATCH_SIZE.observe(item.events)
        metrics.COMMIT_SECONDS.observe(time.perf_counter() - item.started)
        self._gauge(metrics.POSITION, pm.PARTITION_POSITION, item.position)
        for record in item.quarantined:
            _quarantined(record)
        self._health(True)
        self._on_commit()

    def _commit_one(self, item: Prepared) -> None:
        commit(self._store, item)
        self._committed(item)

    def _prepare(
        self, engine: Engine, position: int, started: float, records: list[Quarantined]
    ) -> Prepared:
        drained = engine.drain()
        if drained.elsewhere:
            self._folder.relaying.news(drained.elsewhere)
        for change in drained.changes:
            metrics.CHANGES.labels(change.kind).inc()
        try:
            batch = self._store.prepare(drained)
        except UNENCODABLE_VALUE_ERRORS as error:
            unencodable = UnencodableRows(f"the rows through position {position}")
            unencodable.__cause__ = error
            raise CommitFailed(position, unencodable) from error
        after, self._prepared_through = self._prepared_through, position
        relayed = None
        if not self.scope.single:
            mail, sent = self._folder.relaying.drain()
            relayed = Relayed(mail, sent, self._folder.relaying.relayed_through)
        return Prepared(
            batch, position, len(drained.facts), started, records, after=after, relayed=relayed
        )

    def _commit_now(self, engine: Engine, position: int, records: list[Quarantined]) -> None:
        self._commit_one(self._prepare(engine, position, time.perf_counter(), records))

    def _follow(self, engine: Engine, stop: threading.Event) -> None:
        committer = Committer(self._commit_one)
        try:
            for batch in self._follower.batches(
                self.position, stop, lambda: self._between_batches(committer)
            ):
                started = time.perf_counter()
                last = 0
                records: list[Quarantined] = []
                self._folder.prefetch(batch)
                for notification in batch:
                    if notification.topic in BUILT_TOPICS:
                        self._commit_before_build(committer, engine, last, started, records)
                        records = []
                    found = self._folder.fold(engine, notification)
                    if found is not None:
                        records.append(found)
                    last = notification.id
                committer.submit(self._prepare(engine, last, started, records))
        finally:
            committer.close()

    def _gauge(self, single: Gauge, labeled: Gauge, value: int) -> None:
        """A partition's figure; in a one-partition deployment also the process-wide one."""
        labeled.labels(str(self.scope.partition)).set(value)
        if self.scope.single:
            single.set(value)

    def _between_batches(self, committer: Committer) -> None:
        """While idle: the last commit went through, and the lock is still ours."""
        committer.check()
        if self._lock is not None:
            self._lock.ensure_held()

    def _commit_before_build(
        self,
        committer: Committer,
        engine: Engine,
        last: int,
        started: float,
        records: list[Quarantined],
    ) -> None:
        """Commit everything folded so far (through `last`, if anything), and wait until it
        is: the build a Segment.Built is merged with is read from the store, and in a
        rebuild computed there from the facts committed up to its definition."""
        if last:
            committer.submit(self._prepare(engine, last, started, records))
        committer.flush()


def _quarantined(record: Quarantined) -> None:
    metrics.QUARANTINED_TOTAL.labels(record.reason).inc()
    metrics.QUARANTINED.inc()
    _log.error(
        "event quarantined",
        position=record.position,
        app_id=record.app_id,
        kind=record.kind,
        event_id=record.event_id,
        user_id=record.user_id,
        reason=record.reason,
        detail=record.detail,
    )
