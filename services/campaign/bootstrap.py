"""The one place that builds the campaign service's concrete parts and wires them.

Tests pass fakes of our own ports (clock, segment members) and may keep the
background loops off to drive each part step by step.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import httpx
import structlog
from cohortflow.campaigns.v1 import campaigns_pb2, campaigns_pb2_grpc, inbox_pb2, inbox_pb2_grpc
from nats.aio.client import Client as NATS
from psycopg_pool import AsyncConnectionPool

from services.campaign.adapters.backlog import DueSends
from services.campaign.adapters.broadcasts import BroadcastScheduler
from services.campaign.adapters.catalog import CampaignCatalog
from services.campaign.adapters.channels import EmailSender, PushSender, SmsSender, WebhookSender
from services.campaign.adapters.connections import connection_pool
from services.campaign.adapters.consumer import ChangeConsumer
from services.campaign.adapters.contract_reads import ContractPools
from services.campaign.adapters.conversions import ConversionFollower, open_conversion_recorder
from services.campaign.adapters.dispatcher import Dispatcher
from services.campaign.adapters.erasures import ErasureSweeper
from services.campaign.adapters.housekeeping import Housekeeper
from services.campaign.adapters.poison import PoisonLog
from services.campaign.adapters.profiles import PostgresProfileReader
from services.campaign.adapters.rendering import RenderPool
from services.campaign.adapters.segment_directory import GrpcSegmentDirectory, UncheckedSegments
from services.campaign.adapters.segment_members import PostgresSegmentMembers
from services.campaign.adapters.store import CampaignStore, open_campaign_store
from services.campaign.adapters.trigger_events import LogTriggerEvents
from services.campaign.config import CampaignSettings
from services.campaign.decisions import Decider
from services.campaign.domain.clock import Clock, SystemClock
from services.campaign.domain.ports import ChannelSender, Renderer, SegmentDirectory, SegmentMembers
from services.campaign.domain.validation import Rules
from services.campaign.grpc.inbox import InboxServicer
from services.campaign.grpc.servicer import CampaignServicer
from services.common.grpc.auth import ApiKeys
from services.common.grpc.server import Registration, Served, create_server
from services.common.jetstream import ChangeStreamSettings, connect
from services.common.probes import DatabaseProbe, watch
from services.common.readiness import Check, Readiness
from services.eventlog.partitioned import PartitionedLog, open_partitioned_log

CAMPAIGN_SERVICE = campaigns_pb2.DESCRIPTOR.services_by_name["CampaignService"].full_name
INBOX_SERVICE = inbox_pb2.DESCRIPTOR.services_by_name["InboxService"].full_name
_log = structlog.get_logger("campaign")


@dataclass
class CampaignApp:
    served: Served
    pool: AsyncConnectionPool
    store: CampaignStore
    catalog: CampaignCatalog
    log: PartitionedLog  # every partition's log: conversions and trigger events
    nc: NATS
    http: httpx.AsyncClient
    decider: Decider
    dispatcher: Dispatcher
    consumer: ChangeConsumer
    follower: ConversionFollower
    scheduler: BroadcastScheduler
    housekeeper: Housekeeper
    erasures: ErasureSweeper
    renderer: Renderer
    segments: SegmentDirectory
    readiness: Readiness
    database: Check
    nats: Check
    probe: DatabaseProbe
    due_sends: DueSends
    settings: CampaignSettings
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # Pools of the deployment's other databases, where the read contract is read too.
    contract_pools: list[AsyncConnectionPool] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.served.port

    def start_loops(self) -> None:
        loops = (
            self.consumer,
            self.dispatcher,
            self.follower,
            self.scheduler,
            self.housekeeper,
            self.erasures,
            self.due_sends,
        )
        for loop in loops:
            self.tasks.append(asyncio.create_task(loop.run(self.stopping)))
        self.start_health()

    def start_health(self) -> None:
        """Probe the database and the consumer (through NATS) for readiness."""
        timeout_s = self.settings.health_timeout_s
        probes = (
            (self.database, self.probe),
            (self.nats, lambda: self.consumer.refresh_info(timeout_s)),
        )
        for check, probe in probes:
            task = watch(
                check,
                probe,
                self.stopping,
                interval_s=self.settings.health_interval_s,
                timeout_s=timeout_s,
            )
            self.tasks.append(asyncio.create_task(task))

    async def stop(self, grace: float, drain: float = 0.0) -> None:
        """Stop the API, let the loops finish their current batch (acked), close."""
        await self.served.stop(grace, drain)
        self.stopping.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.consumer.close()
        with contextlib.suppress(Exception):
            await self.nc.drain()
        await self.http.aclose()
        for part in (self.renderer, self.segments):
            closing = getattr(part, "close", None)
            if closing is not None:
                await closing()
        await self.probe.close()
        await self.pool.close()
        for other in self.contract_pools:
            await other.close()
        self.follower.close()
        self.log.close()
        self.store.close()


async def _contract_pools(settings: CampaignSettings, home: AsyncConnectionPool) -> ContractPools:
    """The service's pool, and one for each other database holding partitions."""
    deployment = await asyncio.to_thread(settings.deployment)
    pools = {settings.database_url: home}
    for url in deployment.databases():
        if url not in pools:
            pools[url] = connection_pool(url, max(2, settings.db_pool_size // 2))
            await pools[url].open(wait=True, timeout=30)
    return ContractPools(pools, deployment, home)


def build_senders(settings: CampaignSettings, http: httpx.AsyncClient) -> dict[str, ChannelSender]:
    senders: dict[str, ChannelSender] = {
        "webhook": WebhookSender(
            http, settings.secrets(), settings.webhook_secret, settings.webhook_networks()
        )
    }
    if (smtp := settings.smtp()) is not None:
        senders["email"] = EmailSender(smtp)
    if (push := settings.push()) is not None:
        senders["push"] = PushSender(http, push)
    if (sms := settings.sms()) is not None:
        senders["sms"] = SmsSender(http, sms)
    return senders


async def start_campaign(
    settings: CampaignSettings,
    keys: ApiKeys,
    *,
    stream: ChangeStreamSettings | None = None,
    clock: Clock | None = None,
    segment_members: SegmentMembers | None = None,
    segments: SegmentDirectory | None = None,
    renderer: Renderer | None = None,
    background: bool = True,
) -> CampaignApp:
    """The running service. Tests may pass fakes of the clock and of the ports that
    reach the projector (segment members, the segment directory) or a renderer."""
    clock = clock or SystemClock()
    stream = stream or ChangeStreamSettings()
    pool = connection_pool(settings.database_url, settings.db_pool_size)
    await pool.open(wait=True, timeout=30)
    contract = await _contract_pools(settings, pool)
    store = open_campaign_store(settings.database_url)
    catalog = CampaignCatalog(store)
    await asyncio.to_thread(catalog.refresh)
    log = open_partitioned_log(contract.deployment, pool_size=2)
    if renderer is None:
        renderer = RenderPool(settings.render_limits())
        await renderer.start()
    if segments is None:
        segments = (
            GrpcSegmentDirectory(
                # Segment definitions are saved in partition 0: its head is their position.
                settings.segments_address,
                log.home.head_position,
                settings.http_timeout_s,
            )
            if settings.segments_address
            else UncheckedSegments()
        )
    http = httpx.AsyncClient(timeout=settings.http_timeout_s)
    dispatcher = Dispatcher(
        pool,
        catalog,
        build_senders(settings, http),
        clock,
        batch=settings.dispatch_batch,
        concurrency=settings.dispatch_concurrency,
        lease_s=settings.lease_s,
        max_attempts=settings.max_attempts,
        retry_base_s=settings.retry_base_s,
        retry_max_s=settings.retry_max_s,
        poll_s=settings.dispatch_poll_s,
    )
    decider = Decider(
        pool,
        catalog,
        PostgresProfileReader(contract),
        LogTriggerEvents(log),
        clock,
        renderer,
        opt_in_channels=settings.opt_in(),
        on_decided=dispatcher.wake.set,
    )
    nc = await connect(settings.nats_url, "campaign")
    # Ready = decisions can be committed (database) and changes fetched (NATS).
    database = Check("database", trip_after=settings.health_failures)
    nats = Check("nats", trip_after=settings.health_failures)
    consumer = ChangeConsumer(
        nc,
        stream,
        settings.consumer,
        decider.process,
        PoisonLog(pool, clock).record,
        batch=settings.fetch_batch,
        ack_wait_s=settings.ack_wait_s,
        nak_base_s=settings.nak_base_s,
        nak_max_s=settings.nak_max_s,
        database=database,
    )
    await consumer.start()
    follower = ConversionFollower(
        log,
        open_conversion_recorder(settings.database_url),
        catalog.goals,
        poll_s=settings.conversions_poll_s,
    )
    scheduler = BroadcastScheduler(
        pool,
        catalog,
        segment_members or PostgresSegmentMembers(contract),
        decider,
        clock,
        misfire_s=settings.broadcast_misfire_s,
        poll_s=settings.broadcast_poll_s,
    )
    served = await create_server(
        settings.listen,
        [
            Registration(
                campaigns_pb2_grpc.add_CampaignServiceServicer_to_server,
                CampaignServicer(
                    store, catalog, pool, clock, segments, Rules(settings.webhook_networks())
                ),
                CAMPAIGN_SERVICE,
            ),
            Registration(
                inbox_pb2_grpc.add_InboxServiceServicer_to_server,
                InboxServicer(pool, clock),
                INBOX_SERVICE,
            ),
        ],
        keys,
        max_receive_bytes=settings.max_receive_bytes,
    )
    app = CampaignApp(
        contract_pools=contract.others(pool),
        served=served,
        pool=pool,
        store=store,
        catalog=catalog,
        log=log,
        nc=nc,
        http=http,
        decider=decider,
        dispatcher=dispatcher,
        consumer=consumer,
        follower=follower,
        scheduler=scheduler,
        housekeeper=Housekeeper(
            pool,
            clock,
            # Ids of changes the stream has dropped can never come back (plus a week).
            retention_days=(stream.max_age_days or 3650) + 7,
        ),
        erasures=ErasureSweeper(pool, poll_s=settings.erasure_poll_s),
        renderer=renderer,
        segments=segments,
        # The API needs only the database; the whole service ("") needs NATS as well.
        readiness=Readiness(
            served, {"": [database, nats], CAMPAIGN_SERVICE: [database], INBOX_SERVICE: [database]}
        ),
        database=database,
        nats=nats,
        probe=DatabaseProbe(settings.database_url, settings.health_timeout_s),
        due_sends=DueSends(
            pool,
            clock,
            channels={"in_app", *dispatcher.channels()},
            poll_s=settings.health_interval_s,
        ),
        settings=settings,
    )
    if background:
        app.start_loops()
    return app
