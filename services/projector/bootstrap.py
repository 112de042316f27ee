"""The one place that builds the projector's concrete parts and wires them together."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from cohortflow.analytics.v1 import analytics_pb2, analytics_pb2_grpc
from cohortflow.operations.v1 import operations_pb2, operations_pb2_grpc
from cohortflow.profiles.v1 import profiles_pb2, profiles_pb2_grpc
from cohortflow.segments.v1 import segments_pb2, segments_pb2_grpc
from nats.aio.client import Client as NATS

from services.common.grpc.auth import ApiKeys
from services.common.grpc.server import Registration, Served, create_server
from services.common.jetstream import (
    ChangeStreamSettings,
    ChangeSubjects,
    connect,
    ensure_change_stream,
)
from services.common.probes import watch
from services.common.readiness import Check, Readiness
from services.eventlog.partitioned import PartitionedLog, open_partitioned_log
from services.eventlog.partitions import Deployment
from services.eventlog.store import EventLog, open_event_log
from services.projector.adapters.builds import SegmentBuilder
from services.projector.adapters.fanout import Fanout
from services.projector.adapters.follower import LogFollower
from services.projector.adapters.history_queries import HistoryQueries
from services.projector.adapters.outbox import OutboxQueries
from services.projector.adapters.quarantine import QuarantineQueries
from services.projector.adapters.queries import ProfileQueries
from services.projector.adapters.relay import OutboxRelay
from services.projector.adapters.rollup_queries import RollupQueries
from services.projector.adapters.rollups import RollupFolder
from services.projector.adapters.segment_queries import SegmentQueries
from services.projector.adapters.store import ProjectorStore, open_store
from services.projector.adapters.ticker import Ticker
from services.projector.config import Policies, ProjectorSettings
from services.projector.grpc.analytics import AnalyticsServicer
from services.projector.grpc.operations import OperationsServicer
from services.projector.grpc.segments import SegmentServicer
from services.projector.grpc.servicer import ProfileServicer
from services.projector.lock import ProjectorLock
from services.projector.monitor import monitor, refresh
from services.projector.partitions.worker import PartitionWorker, WorkerSettings
from services.projector.rebuild import PROJECTOR_LOCK
from services.projector.runner import Projection
from services.projector.service_layer.segment_commands import SegmentCommands

PROFILE_SERVICE = profiles_pb2.DESCRIPTOR.services_by_name["ProfileService"].full_name
SEGMENT_SERVICE = segments_pb2.DESCRIPTOR.services_by_name["SegmentService"].full_name
OPERATIONS_SERVICE = operations_pb2.DESCRIPTOR.services_by_name["OperationsService"].full_name
ANALYTICS_SERVICE = analytics_pb2.DESCRIPTOR.services_by_name["AnalyticsService"].full_name
# Health name of publishing changes (not an RPC service): NOT_SERVING while changes cannot
# reach JetStream. Reads do not need NATS, so the overall "" and the APIs do not follow it.
RELAY_HEALTH = "cohortflow.projector.relay"
_log = structlog.get_logger("projector")


@dataclass
class ProjectorApp:
    """A projector process: with one partition a `projection` (behind the projector lock);
    partitioned, a `worker` folding its share of the partitions."""

    served: Served
    projection: Projection | None
    log: EventLog | PartitionedLog
    store: ProjectorStore
    stop_threads: threading.Event
    stop_relay: asyncio.Event
    threads: list[threading.Thread]
    relay_task: asyncio.Task[None]
    readiness: Readiness
    lock: ProjectorLock | None
    worker: PartitionWorker | None = None
    # The stores of the other databases of a partitioned deployment.
    stores: list[ProjectorStore] = field(default_factory=list)
    relay: OutboxRelay | None = None
    relays: list[OutboxRelay] = field(default_factory=list)
    relay_nc: NATS | None = None
    nats_closers: list = field(default_factory=list)
    health_tasks: list[asyncio.Task[None]] = field(default_factory=list)
    reads: Fanout | None = None

    @property
    def healthy(self) -> bool:
        folding = self.projection if self.projection is not None else self.worker
        return folding is not None and folding.healthy

    def committed(self, partition: int) -> int:
        """The position (naming the partition) that partition's read models committed."""
        if self.projection is not None:
            return self.projection.position
        assert self.worker is not None
        return self.worker.committed(partition)

    def outboxes(self) -> list[OutboxQueries]:
        """What the relay publishes: the outbox, or per database the held partitions'."""
        if self.worker is None:
            return [OutboxQueries(self.store)]
        return [OutboxQueries(store, self.worker.held) for store in (self.store, *self.stores)]

    def nudge(self) -> None:
        for relay in self.relays:
            relay.nudge()

    @property
    def port(self) -> int:
        return self.served.port

    async def relay_can_publish(self, stream: str, timeout_s: float) -> None:
        """Raises unless changes can be published now: connected to NATS, the stream
        answers (it has a leader), and the relay's last round was acknowledged."""
        nc, relays = self.relay_nc, self.relays
        if nc is None or not relays or not nc.is_connected:
            raise ConnectionError("not connected to NATS")
        await nc.jetstream(timeout=timeout_s).stream_info(stream)
        for relay in relays:
            if relay.failing:
                raise ConnectionError(relay.last_error)

    async def stop(self, grace: float, drain: float = 0.0) -> None:
        await self.served.stop(grace, drain)
        self.stop_threads.set()
        for thread in self.threads:
            await asyncio.to_thread(thread.join, 30)
        # One last relay round, so what was committed goes out before we leave.
        self.stop_relay.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.relay_task, timeout=10)
        for task in self.health_tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, timeout=10)
        for close in self.nats_closers:
            with contextlib.suppress(Exception):
                await close()
        self.log.close()
        if self.reads is not None:
            self.reads.close()
        for store in (self.store, *self.stores):
            store.datastore.close()


async def _relay_forever(
    app: ProjectorApp, settings: ProjectorSettings, streams: ChangeStreamSettings
) -> None:
    """Connect to NATS (waiting it out if it is down), make the stream, run the relay."""
    backoff = 0.5
    while not app.stop_relay.is_set():
        try:
            nc = await connect(settings.nats_url, "cohortflow-projector")
        except Exception as error:
            _log.warning("NATS unreachable; changes wait in the outbox", error=repr(error))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(app.stop_relay.wait(), timeout=backoff)
            backoff = min(backoff * 2, 10.0)
            continue
        app.nats_closers.append(nc.drain)
        js = nc.jetstream(publish_async_max_pending=4000)
        try:
            await ensure_change_stream(js, streams)
        except Exception as error:
            _log.warning("cannot create the change stream yet", error=repr(error))
            await nc.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(app.stop_relay.wait(), timeout=backoff)
            backoff = min(backoff * 2, 10.0)
            continue
        relays = [
            OutboxRelay(
                outbox,
                js,
                batch=settings.relay_batch,
                ack_timeout_s=settings.relay_ack_timeout_s,
            )
            for outbox in app.outboxes()
        ]
        app.relays, app.relay, app.relay_nc = relays, relays[0], nc
        await asyncio.gather(*(relay.run(app.stop_relay) for relay in relays))
        # Stopping: publish what is left, once, if NATS is there.
        for relay in relays:
            with contextlib.suppress(Exception):
                while await asyncio.wait_for(relay.publish_once(), timeout=5):
                    pass
        return


async def start_projector(
    settings: ProjectorSettings,
    keys: ApiKeys,
    *,
    streams: ChangeStreamSettings | None = None,
    policies: Policies | None = None,
) -> ProjectorApp:
    streams = streams or ChangeStreamSettings()
    policies = policies or settings.load_policies()
    subjects = ChangeSubjects(streams.subject_prefix)
    deployment = await asyncio.to_thread(settings.deployment)
    loop = asyncio.get_running_loop()
    holder: dict[str, ProjectorApp] = {}

    def on_commit(_partition: int = 0) -> None:
        app = holder.get("app")
        if app is not None:
            loop.call_soon_threadsafe(app.nudge)

    # Ready = it can fold and serve reads: NOT_SERVING from a failed commit until the next
    # one succeeds. Publishing changes is judged apart (RELAY_HEALTH).
    projecting = Check("projection", trip_after=1)
    relaying = Check("relay", trip_after=settings.health_failures)

    def on_health(healthy: bool) -> None:
        if healthy:
            projecting.passed()
        else:
            projecting.failed("the projection cannot commit")

    if deployment.partitions == 1:
        folding = await _single(settings, subjects, policies, on_commit, on_health)
    else:
        folding = _partitioned(settings, deployment, subjects, policies, on_commit, on_health)
    log, store = folding.log, folding.store
    home_log = log if isinstance(log, EventLog) else log.home
    stop_threads = threading.Event()
    threads = [
        threading.Thread(target=target, args=(stop_threads,), name=name)
        for name, target in folding.threads
    ]
    # Each database folds its own changes into its own rollups; reads fan out over them.
    for n, each in enumerate((store, *folding.stores)):
        rollups = RollupFolder(each, poll_s=settings.rollup_poll_s)
        threads.append(
            threading.Thread(target=rollups.run, args=(stop_threads,), name=f"rollups{n}")
        )
    reads = Fanout(folding.by_url, deployment) if folding.by_url else Fanout.of(store)
    servicer = ProfileServicer(
        ProfileQueries(reads),
        lambda partition: holder["app"].committed(partition),
        read_wait_s=settings.read_wait_s,
        partitions=deployment.partitions,
    )
    segment_commands = SegmentCommands(home_log)
    segments = SegmentServicer(
        segment_commands,
        SegmentQueries(reads),
        HistoryQueries(reads, timeout_s=settings.query_timeout_s),
        servicer.caught_up,
    )
    served = await create_server(
        settings.listen,
        [
            Registration(
                profiles_pb2_grpc.add_ProfileServiceServicer_to_server, servicer, PROFILE_SERVICE
            ),
            Registration(
                segments_pb2_grpc.add_SegmentServiceServicer_to_server, segments, SEGMENT_SERVICE
            ),
            Registration(
                operations_pb2_grpc.add_OperationsServiceServicer_to_server,
                OperationsServicer(QuarantineQueries(reads)),
                OPERATIONS_SERVICE,
            ),
            Registration(
                analytics_pb2_grpc.add_AnalyticsServiceServicer_to_server,
                AnalyticsServicer(RollupQueries(reads), segment_commands),
                ANALYTICS_SERVICE,
            ),
        ],
        keys,
        max_receive_bytes=settings.max_receive_bytes,
    )
    app = ProjectorApp(
        served=served,
        projection=folding.projection,
        log=log,
        store=store,
        stop_threads=stop_threads,
        stop_relay=asyncio.Event(),
        threads=threads,
        relay_task=loop.create_task(asyncio.sleep(0)),
        readiness=Readiness(
            served,
            {
                **{name: [projecting] for name in ("", *served.service_names)},
                RELAY_HEALTH: [relaying],
            },
        ),
        lock=folding.lock,
        worker=folding.worker,
        stores=folding.stores,
        reads=reads,
    )
    holder["app"] = app
    app.relay_task = loop.create_task(_relay_forever(app, settings, streams))
    app.health_tasks.append(
        loop.create_task(
            watch(
                relaying,
                lambda: app.relay_can_publish(streams.stream, settings.health_timeout_s),
                app.stop_relay,
                interval_s=settings.health_interval_s,
                timeout_s=settings.health_timeout_s,
            )
        )
    )
    for thread in threads:
        thread.start()
    await app.readiness.sync()
    return app


@dataclass
class _Folding:
    """What folds the log in this process, and the threads it runs on."""

    log: EventLog | PartitionedLog
    store: ProjectorStore
    threads: list[tuple[str, Callable[[threading.Event], None]]]
    projection: Projection | None = None
    lock: ProjectorLock | None = None
    worker: PartitionWorker | None = None
    stores: list[ProjectorStore] = field(default_factory=list)
    # Every database's store by its URL (partitioned; empty: only `store`).
    by_url: dict[str, ProjectorStore] = field(default_factory=dict)


async def _single(
    settings: ProjectorSettings,
    subjects: ChangeSubjects,
    policies: Policies,
    on_commit: Callable[[], None],
    on_health: Callable[[bool], None],
) -> _Folding:
    """One partition: one projecting process (the lock), others wait as standbys."""
    log = open_event_log(settings.database_url, pool_size=3)
    store = open_store(settings.database_url, subjects, pool_size=settings.db_pool_size)
    follower = LogFollower(
        log, settings.database_url, batch_size=settings.batch_size, wait_s=settings.watchdog_s
    )
    projection = Projection(log, store, follower, policies, on_commit, on_health)
    lock = ProjectorLock(settings.database_url, PROJECTOR_LOCK)
    # The gauges are true before the process serves (lag: head minus committed position).
    try:
        await asyncio.to_thread(refresh, log, store)
    except Exception as error:
        _log.warning("cannot read the lag yet", error=repr(error))
    threads: list[tuple[str, Callable[[threading.Event], None]]] = [
        ("projection", lambda stop: projection.run(stop, lock)),
        ("monitor", lambda stop: monitor(log, store, lock, stop)),
    ]
    if settings.tick_interval_s > 0:
        threads.append(("ticker", Ticker(log, settings.tick_interval_s).run))
    builder = SegmentBuilder(
        store,
        log,
        lambda: projection.position,
        statement_timeout_s=settings.build_statement_timeout_s,
    )
    threads.append(("builder", builder.run))
    return _Folding(log, store, threads, projection=projection, lock=lock)


def _partitioned(
    settings: ProjectorSettings,
    deployment: Deployment,
    subjects: ChangeSubjects,
    policies: Policies,
    on_commit: Callable[[int], None],
    on_health: Callable[[bool], None],
) -> _Folding:
    """Several partitions: this process folds its share of them (leases)."""
    log = open_partitioned_log(deployment, pool_size=3)
    stores = {
        url: open_store(url, subjects, pool_size=settings.db_pool_size)
        for url in deployment.databases()
    }
    worker = PartitionWorker(
        log,
        stores,
        policies,
        WorkerSettings(
            batch_size=settings.batch_size,
            watchdog_s=settings.watchdog_s,
            tick_interval_s=settings.tick_interval_s,
            build_statement_timeout_s=settings.build_statement_timeout_s,
        ),
        on_commit=on_commit,
        on_health=on_health,
    )
    home = stores[deployment.home_url]
    others = [store for url, store in stores.items() if url != deployment.home_url]
    return _Folding(
        log, home, [("worker", worker.run)], worker=worker, stores=others, by_url=stores
    )
