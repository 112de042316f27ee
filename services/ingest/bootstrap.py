"""The one place that builds ingest's concrete parts and wires them together."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from cohortflow.ingest.v1 import ingest_pb2, ingest_pb2_grpc

from services.common.grpc.auth import ApiKeys
from services.common.grpc.server import Registration, Served, create_server
from services.eventlog.partitioned import PartitionedLog, open_partitioned_log
from services.ingest.adapters.identity_links import IdentityLinks
from services.ingest.appender import Appender
from services.ingest.config import IngestSettings
from services.ingest.grpc.servicer import IngestServicer
from services.ingest.http.api import HttpLimits, TrackingApi
from services.ingest.http.server import HttpEdge, start_http
from services.ingest.routing import PartitionedAppender, PartitionWriter

SERVICE_NAME = ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name


@dataclass
class IngestApp:
    served: Served
    appender: PartitionedAppender
    log: PartitionedLog
    http: HttpEdge | None = None

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
        await self.appender.close()
        self.log.close()


async def start_ingest(settings: IngestSettings, keys: ApiKeys) -> IngestApp:
    event_log = open_partitioned_log(
        settings.deployment(),
        pool_size=settings.db_pool_size,
        connect_timeout_s=settings.db_connect_timeout_s,
    )
    appender = PartitionedAppender(
        event_log,
        [
            Appender(
                PartitionWriter(event_log, partition),
                max_events=settings.max_batch_events,
                max_bytes=settings.max_batch_bytes,
                max_inflight=settings.max_inflight,
            )
            for partition in range(event_log.partitions)
        ],
        IdentityLinks(event_log.home.log_recorder.datastore) if event_log.partitions > 1 else None,
    )
    servicer = IngestServicer(
        appender, settings.limits(), max_events_per_call=settings.max_events_per_call
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
            )
        ],
        keys,
        reuse_port=settings.reuse_port,
        max_receive_bytes=settings.max_receive_bytes,
    )
    app = IngestApp(served=served, appender=appender, log=event_log)
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
        )
        try:
            app.http = await start_http(
                api, *address, reuse_port=settings.reuse_port, grace=settings.shutdown_grace_s
            )
        except OSError:
            await app.stop(0)
            raise
    return app
