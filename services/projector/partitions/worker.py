"""A projector worker of a partitioned deployment: folds the partitions it holds.

Every second it looks at the live workers (leases.py), works out which partitions are
its share (assignment.py), takes those that are free and lets go of those that are
another's now. Each partition it holds runs as its own `Projection` (its engine,
follower and committer on a thread), with a builder for its segment versions; the
worker also ticks the recorded clock of its partitions. A partition let go stops after
the batch in flight; the next holder resumes from the last commit, and the fence on the
partition's tracked position keeps two holders from both committing.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from eventsourcing.postgres import PostgresDatastore

from services.eventlog.keyring import Keyring
from services.eventlog.partitioned import PartitionedLog
from services.eventlog.partitions import encode_position
from services.projector import schema
from services.projector.adapters.builds import SegmentBuilder
from services.projector.adapters.follower import LogFollower
from services.projector.adapters.store import ProjectorStore
from services.projector.adapters.ticker import tick_at
from services.projector.domain.fold_state import PolicySource
from services.projector.partitions import gauges, metrics
from services.projector.partitions.assignment import assigned
from services.projector.partitions.leases import LeaseLost, Leases
from services.projector.partitions.mail import MailRelay
from services.projector.partitions.rfm_coordinator import RfmCoordinator
from services.projector.partitions.scope import Scope
from services.projector.runner import Projection

_log = structlog.get_logger("projector.worker")


@dataclass(frozen=True)
class WorkerSettings:
    batch_size: int = 2000
    watchdog_s: float = 1.0
    tick_interval_s: float = 60.0
    build_statement_timeout_s: float = 300.0
    # How often the worker looks at the other workers (and ticks, at most).
    rebalance_s: float = 1.0


@dataclass
class _Held:
    """A partition this worker folds."""

    projection: Projection
    builder: SegmentBuilder
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)


class PartitionWorker:
    def __init__(
        self,
        log: PartitionedLog,
        stores: dict[str, ProjectorStore],
        policies: PolicySource,
        settings: WorkerSettings,
        *,
        worker_id: str | None = None,
        on_commit: Callable[[int], None] = lambda partition: None,
        on_health: Callable[[bool], None] = lambda healthy: None,
    ) -> None:
        """`stores`: a store per database of the deployment (its partitions' stores share
        its pool)."""
        self._log = log
        self._deployment = log.deployment
        self._stores = stores
        self._policies = policies
        self._settings = settings
        self.worker_id = worker_id or f"projector-{uuid.uuid4().hex[:12]}"
        self._on_commit = on_commit
        self._on_health = on_health
        self._leases = Leases(self._deployment.home_url, self.worker_id)
        # The keys of sealed fields, in the home database: one cache for every partition.
        self._keyring = Keyring(log.home.log_recorder.datastore)
        self._held: dict[int, _Held] = {}
        self._guard = threading.Lock()
        self._last_tick = 0
        self.healthy = True

    # ---- what readers ask -------------------------------------------------------------

    def held(self) -> list[int]:
        with self._guard:
            return sorted(self._held)

    def store_of(self, partition: int) -> ProjectorStore:
        base = self._stores[self._deployment.database_of(partition)]
        return base.for_partition(Scope(partition, self._deployment.partitions))

    def committed(self, partition: int) -> int:
        """The position (naming the partition) its read models have committed. For
        partition 0, no further than the first app-wide fact (a segment definition) that
        some other partition has not folded yet: a read waiting for a definition's position
        waits until every partition has it."""
        with self._guard:
            held = self._held.get(partition)
        reached = held.projection.position if held is not None else None
        if reached is None:
            reached = self.store_of(partition).position()
        if partition == 0:
            reached = min(reached, self._facts_settled_below() - 1)
        return encode_position(partition, reached)

    def _facts_settled_below(self) -> int:
        """The partition-0 position of the first app-wide fact not yet folded everywhere
        (a number past every position when all are)."""
        folded = min(
            self.store_of(p).relayed_through() for p in range(1, self._deployment.partitions)
        )
        with self.store_of(0).cursor() as curs:
            curs.execute(
                f"SELECT min(position) AS next FROM {schema.RELAYED_TABLE} WHERE position > %s",
                (folded,),
            )
            row = curs.fetchone()
        return int(row["next"]) if row and row["next"] is not None else 1 << 47

    # ---- the loop ---------------------------------------------------------------------

    def mail_sources(self) -> list[tuple[PostgresDatastore, list[int]]]:
        """Per database, the held partitions there (whose letters this process sends)."""
        held = self.held()
        return [
            (store.datastore, [p for p in held if self._deployment.database_of(p) == url])
            for url, store in self._stores.items()
        ]

    def run(self, stop: threading.Event) -> None:
        coordinator = RfmCoordinator(
            self._log, list(self._stores.values()), self._policies, lambda: 0 in self.held()
        )
        helpers = [
            threading.Thread(
                target=MailRelay(self._log, self.mail_sources).run, args=(stop,), name="mail"
            ),
            threading.Thread(target=coordinator.run, args=(stop,), name="rfm-cut-points"),
        ]
        for thread in helpers:
            thread.start()
        try:
            self._run(stop)
        finally:
            for thread in helpers:
                thread.join(30)

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self._leases.join()
                self._balance_until(stop)
            except LeaseLost as error:
                _log.error("leases lost; stopping every partition", error=str(error))
                self._drop_all(release=False)
            except Exception as error:
                _log.error("worker failed; rejoining", error=repr(error))
                self._drop_all(release=False)
                self._leases.leave()
            stop.wait(self._settings.rebalance_s)
        self._drop_all(release=True)
        self._leases.leave()

    def _balance_until(self, stop: threading.Event) -> None:
        while not stop.is_set():
            live = self._leases.live_workers()
            metrics.WORKERS_LIVE.set(len(live))
            mine = assigned(self._deployment.partitions, live, self.worker_id)
            for partition in sorted(set(self.held()) - mine):
                self._drop(partition, release=True)
            for partition in sorted(mine - set(self.held())):
                if self._leases.try_take(partition):
                    self._start(partition)
            self._restart_dead()
            metrics.PARTITIONS.set(self._deployment.partitions)
            taken = self._leases.taken()
            metrics.PARTITIONS_UNHELD.set(self._deployment.partitions - len(taken))
            gauges.refresh(self._log, self._positions(), self._stores.values())
            self._tick()
            self._report_health()
            stop.wait(self._settings.rebalance_s)

    def _start(self, partition: int) -> None:
        store = self.store_of(partition)
        source = self._log.partition_log(partition)
        follower = LogFollower(
            source,
            self._deployment.database_of(partition),
            batch_size=self._settings.batch_size,
            wait_s=self._settings.watchdog_s,
        )
        projection = Projection(
            source,
            store,
            follower,
            self._policies,
            on_commit=lambda: self._on_commit(partition),
            on_health=lambda healthy: self._report_health(),
            keys=self._keyring,
        )
        builder = SegmentBuilder(
            store,
            self._log,
            lambda: projection.position,
            statement_timeout_s=self._settings.build_statement_timeout_s,
        )
        held = _Held(projection, builder)
        held.threads = [
            threading.Thread(
                target=projection.run, args=(held.stop,), name=f"projection-{partition}"
            ),
            threading.Thread(target=builder.run, args=(held.stop,), name=f"builder-{partition}"),
        ]
        with self._guard:
            self._held[partition] = held
        for thread in held.threads:
            thread.start()

    def _drop(self, partition: int, *, release: bool) -> None:
        with self._guard:
            held = self._held.pop(partition, None)
        if held is None:
            return
        held.stop.set()
        for thread in held.threads:
            thread.join(60)
        if release:
            self._leases.release(partition)
        metrics.forget_partition(partition)

    def _drop_all(self, *, release: bool) -> None:
        for partition in self.held():
            self._drop(partition, release=release)

    def _restart_dead(self) -> None:
        """A projection thread that ended while held (it should not): start it again."""
        with self._guard:
            items = list(self._held.items())
        for partition, held in items:
            if not held.stop.is_set() and not all(t.is_alive() for t in held.threads):
                _log.error("a partition's threads ended; starting them again", partition=partition)
                self._drop(partition, release=False)
                self._start(partition)

    def _positions(self) -> dict[int, int | None]:
        """The committed position of each partition held (None while its projection is
        still loading: it sets the partition's gauges when it has resumed)."""
        with self._guard:
            items = list(self._held.items())
        return {
            p: held.projection.position if held.projection.ready.is_set() else None
            for p, held in items
        }

    def _tick(self) -> None:
        """Append the recorded clock's tick to the partitions held, once per interval."""
        interval_us = int(self._settings.tick_interval_s * 1_000_000)
        if interval_us <= 0:
            return
        aligned = time.time_ns() // 1000 // interval_us * interval_us
        if aligned <= self._last_tick:
            return
        stored = [self._log.encode(tick_at(aligned))]
        try:
            for partition in self.held():
                self._log.append(partition, stored)
            self._last_tick = aligned
        except Exception as error:  # the database may be away: the next round ticks
            _log.warning("tick failed", error=repr(error))

    def _report_health(self) -> None:
        with self._guard:
            healthy = all(h.projection.healthy for h in self._held.values())
        if healthy != self.healthy:
            self.healthy = healthy
            self._on_health(healthy)
