"""The one place that builds ingest's concrete parts and wires them together."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from cohortflow.ingest.v1 import (
    history_pb2,
    history_pb2_grpc,
    ingest_pb2,
    ingest_pb2_grpc,
    privacy_pb2,
    privacy_pb2_grpc,
)

from services.common.grpc.auth import ApiKeys
from services.common.grpc.server import Registration, Served, create_server
from services.common.probes import DatabaseProbe, watch
from services.common.readiness import Check, Readiness
from services.eventlog.keyring import Keyring
from services.eventlog.partitioned import PartitionedLog, open_partitioned_log
from services.eventlog.partitions import Deployment
from services.ingest.adapters.history_jobs import HistoryJobs
from services.ingest.adapters.history_progress import AppendProgress, JobLease
from services.ingest.adapters.history_staging import HistoryStaging
from services.ingest.adapters.identity_links import IdentityLinks
from services.ingest.appender import Appender
from services.ingest.config import IngestSettings
from services.ingest.erasures import Erasures
from services.ingest.grpc.history_servicer import HistoryImportServicer
from services.ingest.grpc.privacy_servicer import PrivacyServicer
from services.ingest.grpc.servicer import IngestServicer, wall_clock_us
from services.ingest.history_appender import HistoryAppender
from services.ingest.history_imports import HistoryImports
from services.ingest.history_loop import HistoryLoop
from services.ingest.http.api import HttpLimits, TrackingApi
from services.ingest.http.server import HttpEdge, start_http
from services.ingest.routing import PartitionedAppender, PartitionWriter
from services.ingest.sealer import Sealer

SERVICE_NAME = ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name
PRIVACY_SERVICE_NAME = privacy_pb2.DESCRIPTOR.services_by_name["PrivacyService"].full_name
HISTORY_SERVICE_NAME = history_pb2.DESCRIPTOR.services_by_name["HistoryImportService"].full_name


@dataclass
class IngestApp:
    served: Served
    appender: PartitionedAppender
    log: PartitionedLog
    history: HistoryLoop
    readiness: Readiness
    probes: list[DatabaseProbe]
    http: HttpEdge | None = None
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.served.port

    @property
    def http_port(self) -> int:
        """The port of the HTTP tracking API (0 when it is off)."""
        return self.http.port if self.http else 0

    async def stop(self, grace: float, drain: float = 0.0) -> None:
        """Stop taking calls, finish in-flight ones, commit what is queued, close."""
        stopping = [self.served.stop(grace, drain)]
        if self.http is not None:
            stopping.append(self.http.stop(grace, drain))
        await asyncio.gather(*stopping)
        self.stopping.set()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self.tasks)
        for probe in self.probes:
            await probe.close()
        await self.history.stop()
        await self.appender.close()
        self.log.close()


async def start_ingest(settings: IngestSettings, keys: ApiKeys) -> IngestApp:
    event_log = open_partitioned_log(
        settings.deployment(),
        pool_size=settings.db_pool_size,
        connect_timeout_s=settings.db_connect_timeout_s,
    )
    links = (
        IdentityLinks(event_log.home.log_recorder.datastore) if event_log.partitions > 1 else None
    )
    # Ready = every database it writes to takes appends: a probe of its own for each, and
    # every append transaction reports to the check of its partition's database.
    databases = database_checks(event_log.deployment, settings.health_failures)
    keyring = Keyring(
        event_log.home.log_recorder.datastore,
        cache_size=settings.key_cache_size,
        active_ttl_s=settings.key_ttl_s,
    )
    sealer = Sealer(keyring, settings.clear_property_names()) if settings.seal_personal else None
    appender = PartitionedAppender(
        event_log,
        [
            Appender(
                PartitionWriter(event_log, partition),
                max_events=settings.max_batch_events,
                max_bytes=settings.max_batch_bytes,
                max_inflight=settings.max_inflight,
                health=databases[event_log.deployment.database_of(partition)],
            )
            for partition in range(event_log.partitions)
        ],
        links,
        sealer,
    )
    history = _history(settings, event_log, links)
    servicer = IngestServicer(
        appender, settings.limits(), max_events_per_call=settings.max_events_per_call
    )
    home = event_log.home.log_recorder.datastore
    imports = HistoryImports(
        HistoryJobs(home),
        HistoryStaging(home),
        event_log,
        settings.limits(),
        wall_clock_us,
        on_finished=history.kick,
        sealer=sealer,
    )
    served = await create_server(
        settings.listen,
        [
            # Unchecked by the common guard: validation judges every field, each event of a
            # batch on its own (a NUL in one event rejects that event, not the batch).
            Registration(
                ingest_pb2_grpc.add_IngestServiceServicer_to_server,
                servicer,
                SERVICE_NAME,
                checked=False,
            ),
            Registration(
                history_pb2_grpc.add_HistoryImportServiceServicer_to_server,
                HistoryImportServicer(imports, max_items_per_call=settings.max_events_per_call),
                HISTORY_SERVICE_NAME,
                checked=False,
            ),
            Registration(
                privacy_pb2_grpc.add_PrivacyServiceServicer_to_server,
                PrivacyServicer(Erasures(keyring, event_log)),
                PRIVACY_SERVICE_NAME,
            ),
        ],
        keys,
        reuse_port=settings.reuse_port,
        max_receive_bytes=settings.max_receive_bytes,
    )
    history.start()
    checks = list(databases.values())
    app = IngestApp(
        served=served,
        appender=appender,
        log=event_log,
        history=history,
        readiness=Readiness(
            served,
            {
                name: checks
                for name in ("", SERVICE_NAME, HISTORY_SERVICE_NAME, PRIVACY_SERVICE_NAME)
            },
        ),
        probes=[DatabaseProbe(url, settings.db_connect_timeout_s) for url in databases],
    )
    for check, probe in zip(checks, app.probes, strict=True):
        task = watch(
            check,
            probe,
            app.stopping,
            interval_s=settings.health_interval_s,
            timeout_s=settings.health_timeout_s,
        )
        app.tasks.append(asyncio.create_task(task))
    address = settings.http_address()
    if address is not None:
        api = TrackingApi(
            appender,
            keys,
            settings.limits(),
            HttpLimits(
                settings.http_max_call_bytes,
                settings.http_max_batch_bytes,
                settings.http_max_batch_calls,
            ),
            ready=lambda: all(check.up for check in checks),
        )
        try:
            app.http = await start_http(
                api, *address, reuse_port=settings.reuse_port, grace=settings.shutdown_grace_s
            )
        except OSError:
            await app.stop(0)
            raise
    return app


def database_checks(deployment: Deployment, failures: int) -> dict[str, Check]:
    """A readiness check per database ingest writes to, by URL: the home database's is
    "database", any other's "database-<the first partition it holds>"."""
    home = deployment.home_url
    checks = {home: Check("database", trip_after=failures)}
    for url in deployment.databases():
        if url not in checks:
            name = f"database-{deployment.partitions_in(url)[0]}"
            checks[url] = Check(name, trip_after=failures)
    return checks


def _history(
    settings: IngestSettings, event_log: PartitionedLog, links: IdentityLinks | None
) -> HistoryLoop:
    """The appender of finished history imports, in the background of this process."""
    home = event_log.home.log_recorder.datastore
    progress = AppendProgress(home)
    appender = HistoryAppender(
        event_log,
        HistoryStaging(home),
        progress,
        links,
        max_events=settings.max_batch_events,
        max_bytes=settings.max_batch_bytes,
    )
    lease = JobLease(settings.database_url, settings.db_connect_timeout_s)
    return HistoryLoop(appender, progress, lease, poll_s=settings.history_poll_s)
