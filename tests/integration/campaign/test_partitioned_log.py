"""Campaign on a log of 4 partitions in two databases: conversions follow every partition
(each tracked on its own, exactly once across a restart of the follower, one that cannot
be read holding back only itself), a message reads its triggering event from the partition
that holds it, and segment lookups wait for partition 0's head."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import grpc
import psycopg
import pytest
from cohortflow.campaigns.v1 import campaigns_pb2 as pb
from cohortflow.campaigns.v1 import campaigns_pb2_grpc, inbox_pb2
from cohortflow.segments.v1 import segments_pb2, segments_pb2_grpc
from cohortflow.types.v1 import types_pb2

from services.campaign.adapters.conversions import ConversionFollower, open_conversion_recorder
from services.campaign.bootstrap import CampaignApp
from services.common.grpc.errors import bad_request_of
from services.eventlog.events import EventTracked
from services.eventlog.keyring import Keyring
from services.eventlog.partitioned import PartitionedLog, open_partitioned_log
from services.ingest.sealer import Sealer
from services.migrate import migrate
from tests.integration.campaign.conftest import KEYS, SHOP, AppFactory
from tests.integration.campaign.helpers import (
    BUYERS,
    create,
    deliver,
    deliveries,
    purchase,
    tracked_positions,
    winback,
)
from tests.support.campaign import FakeClock, campaign, lifecycle, membership, seconds
from tests.support.infra import PostgresForTests
from tests.support.partitioned import route
from tests.support.projector import in_process_projector
from tests.support.waiting import eventually

PARTITIONS = 4


@pytest.fixture
def second_database(postgres: PostgresForTests) -> Iterator[str]:
    url = postgres.create_database()
    yield url
    postgres.drop_database(url)


@pytest.fixture
def placement(second_database: str) -> str:
    return f'{{"2-3": "{second_database}"}}'


@pytest.fixture
def database_url(postgres: PostgresForTests, placement: str) -> Iterator[str]:
    """The home database of a deployment of 4 partitions (2 and 3 in a second database)."""
    url = postgres.create_database()
    migrate(url, partitions=PARTITIONS, placement=placement)
    yield url
    postgres.drop_database(url)


@pytest.fixture
def log(database_url: str, placement: str) -> Iterator[PartitionedLog]:
    opened = open_partitioned_log(
        migrate(database_url, partitions=PARTITIONS, placement=placement), pool_size=1
    )
    yield opened
    opened.close()


@pytest.fixture
async def campaign_app(start_app: AppFactory, placement: str) -> CampaignApp:
    return await start_app(COHORTFLOW_PLACEMENT=placement)


def users_in_every_partition(log: PartitionedLog, per_partition: int) -> list[str]:
    by_partition: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    i = 0
    while any(len(users) < per_partition for users in by_partition.values()):
        user = f"user-{i}"
        users = by_partition[log.deployment.partition_of("shop", user)]
        if len(users) < per_partition:
            users.append(user)
        i += 1
    return [u for users in by_partition.values() for u in users]


def seal(log: PartitionedLog, events: list[EventTracked]) -> list[EventTracked]:
    """The events as ingest stores them: every property sealed (the keyring opens them)."""
    sealer = Sealer(Keyring(log.home.log_recorder.datastore), clear_properties=())
    out = sealer.seal_all(events)
    assert all("plan" not in e.properties for e in out)
    return out


async def test_goal_events_in_every_partition_convert_each_exposure_once_across_a_restart(
    campaign_app: CampaignApp,
    campaigns,
    log: PartitionedLog,
    database_url: str,
    nats_server,
    stream,
    clock: FakeClock,
) -> None:
    campaign_id = await create(
        campaigns,
        winback(
            conversion_goal=pb.ConversionGoal(
                event_name="Purchased",
                property_equals={"plan": types_pb2.Value(string_value="pro")},
                attribution_window=seconds(86_400),
            ),
        ),
    )
    users = users_in_every_partition(log, 3)
    dormant = types_pb2.LIFECYCLE_STATE_DORMANT
    await deliver(
        campaign_app,
        nats_server.url,
        stream,
        *(lifecycle("shop", u, types_pb2.LIFECYCLE_STATE_ACTIVE, dormant) for u in users),
    )
    await campaign_app.dispatcher.step()
    clock.advance(3600)
    # Two of each partition's three users buy; the first of them twice, before and after
    # the restart: their exposure converts once, with the first purchase.
    first = {u: purchase("shop", u, clock.now, "pro") for u in users[0::3] + users[1::3]}
    # The third buys another plan than the goal's: no conversion.
    other_plan = [purchase("shop", u, clock.now, "free") for u in users[2::3]]
    route(log, seal(log, [*first.values(), *other_plan]))
    follower = ConversionFollower(
        log, open_conversion_recorder(database_url), campaign_app.catalog.goals, batch=2
    )
    try:
        while follower.step():
            pass
    finally:
        follower.close()
    heads = {log.deployment.log_name(p): log.head(p) for p in range(PARTITIONS)}
    assert tracked_positions(database_url) == heads
    # Restarted: it resumes each partition where it was, and follows what comes next.
    again = [purchase("shop", u, clock.now + 60_000_000, "pro") for u in users[0::3]]
    route(log, seal(log, again))
    restarted = ConversionFollower(
        log, open_conversion_recorder(database_url), campaign_app.catalog.goals, batch=2
    )
    try:
        assert restarted.step() == len(again)
        assert restarted.step() == 0
    finally:
        restarted.close()
    rows = deliveries(database_url, campaign_id=campaign_id)
    assert sorted(r["user_id"] for r in rows) == sorted(users)
    converted = {r["user_id"]: r["conversion_event_id"] for r in rows if r["converted_at"]}
    assert converted == {u: e.event_id for u, e in first.items()}
    stats = await campaigns.GetCampaignStats(
        pb.GetCampaignStatsRequest(campaign_id=campaign_id), metadata=SHOP
    )
    assert sum(g.converted for g in stats.groups) == len(first)


async def test_a_message_reads_its_trigger_event_from_the_partition_holding_it(
    campaign_app: CampaignApp, campaigns, inbox, log: PartitionedLog, nats_server, stream, clock
) -> None:
    await create(
        campaigns,
        campaign(segment_id="cart_abandoners", body="your {{ event.properties.plan }} plan"),
    )
    users = users_in_every_partition(log, 1)
    events = {u: purchase("shop", u, clock.now, f"plan-{u}") for u in users}
    # One user's event is in another partition than theirs (an anonymous history's).
    moved_user = "user-moved"
    events[moved_user] = purchase("shop", moved_user, clock.now, "plan-moved")
    sealed = dict(zip(events, seal(log, list(events.values())), strict=True))
    route(log, [sealed[u] for u in users])
    home = log.deployment.partition_of("shop", moved_user)
    log.append((home + 1) % PARTITIONS, [log.encode(sealed[moved_user])])
    await deliver(
        campaign_app,
        nats_server.url,
        stream,
        *(
            membership("shop", u, "cart_abandoners", event_ids=[e.event_id], event_name=e.name)
            for u, e in events.items()
        ),
    )
    await campaign_app.dispatcher.step()
    for user, event in events.items():
        reply = await inbox.ListInboxMessages(
            inbox_pb2.ListInboxMessagesRequest(user_id=user), metadata=SHOP
        )
        assert [m.body for m in reply.messages] == [f"your {event.properties['plan']} plan"]


async def test_segments_are_looked_up_at_partition_zeros_head(
    start_app: AppFactory, placement: str, database_url: str, nats_server
) -> None:
    """Segment definitions are saved in partition 0: a segment created a moment ago is found
    and an unknown one refused after waiting for partition 0's head (a valid position)."""
    async with in_process_projector(
        database_url, nats_server.url, KEYS, COHORTFLOW_PLACEMENT=placement
    ) as projector:
        app = await start_app(
            segments=None,
            CAMPAIGN_SEGMENTS_ADDRESS=projector.address,
            COHORTFLOW_PLACEMENT=placement,
        )
        async with (
            grpc.aio.insecure_channel(projector.address) as to_projector,
            grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as to_campaign,
        ):
            await segments_pb2_grpc.SegmentServiceStub(to_projector).CreateSegment(
                segments_pb2.CreateSegmentRequest(
                    segment_id="buyers", segment=segments_pb2.Segment(condition=BUYERS)
                ),
                metadata=SHOP,
            )
            campaigns = campaigns_pb2_grpc.CampaignServiceStub(to_campaign)
            assert await create(campaigns, campaign(segment_id="buyers"))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await create(campaigns, campaign(segment_id="ghosts"))
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "does not exist" in bad_request_of(refused.value)[0][1]


async def test_a_partition_that_cannot_be_read_holds_back_only_itself(
    log: PartitionedLog, database_url: str, clock: FakeClock
) -> None:
    users = users_in_every_partition(log, 1)
    route(log, [purchase("shop", u, clock.now, "pro") for u in users])
    heads = {log.deployment.log_name(p): log.head(p) for p in range(PARTITIONS)}
    broken = log.deployment.database_of(1)
    with psycopg.connect(broken, autocommit=True) as conn:
        conn.execute("ALTER TABLE cohortflow_p1_events RENAME TO cohortflow_p1_away")
    follower = ConversionFollower(
        log, open_conversion_recorder(database_url), lambda: {}, poll_s=0.05
    )

    async def followed(expected: dict[str, int]) -> bool:
        return await asyncio.to_thread(tracked_positions, database_url) == expected

    stop = asyncio.Event()
    running = asyncio.create_task(follower.run(stop))
    try:
        without_1 = {n: h for n, h in heads.items() if n != "cohortflow_p1"}
        await eventually(lambda: followed(without_1), "partitions 0, 2, 3 followed", within=20)
        with psycopg.connect(broken, autocommit=True) as conn:
            conn.execute("ALTER TABLE cohortflow_p1_away RENAME TO cohortflow_p1_events")
        await eventually(lambda: followed(heads), "partition 1 followed", within=20)
    finally:
        stop.set()
        await running
        follower.close()
