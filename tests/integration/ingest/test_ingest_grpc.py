"""IngestService over real gRPC and real PostgreSQL (server in this process)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import psycopg
import pytest
from cohortflow.ingest.v1 import ingest_pb2
from cohortflow.types.v1 import types_pb2
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.grpc.auth import ApiKeys
from services.common.grpc.errors import bad_request_of
from services.ingest.bootstrap import SERVICE_NAME, IngestApp, start_ingest
from services.ingest.config import IngestSettings
from tests.support.eventlog import sealed_events, stored_events, stored_rows
from tests.support.ingest import (
    ACCEPTED,
    DUPLICATE,
    REJECTED,
    IngestClient,
    event,
    unique_id,
)

KEYS = ApiKeys([("shop", "key-shop"), ("news", "key-news")])


async def start(database_url: str, **overrides: Any) -> IngestApp:
    settings = IngestSettings(
        DATABASE_URL=database_url, INGEST_LISTEN="127.0.0.1:0", INGEST_HTTP_LISTEN="0", **overrides
    )
    return await start_ingest(settings, KEYS)


@pytest.fixture
async def ingest(database_url: str) -> AsyncIterator[IngestApp]:
    app = await start(database_url)
    yield app
    await app.stop(1)


@pytest.fixture
async def channel(ingest: IngestApp) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{ingest.port}") as ch:
        yield ch


@pytest.fixture
def shop(channel: grpc.aio.Channel) -> IngestClient:
    return IngestClient(channel, "key-shop")


async def test_track_stores_once_and_reports_duplicates(
    shop: IngestClient, database_url: str
) -> None:
    ev = event("Added to Cart", properties={"sku": "A-1", "amount": 9.99})
    first = await shop.track(ev)
    assert first.status == ACCEPTED and first.position > 0
    again = await shop.track(ev)
    assert again.status == DUPLICATE and again.position == first.position
    (stored,) = stored_events(database_url)
    assert stored.app_id == "shop"
    assert stored.properties == {"sku": "A-1", "amount": 9.99}


async def test_concurrent_duplicates_are_stored_once(shop: IngestClient, database_url: str) -> None:
    ev = event()
    results = await asyncio.gather(*(shop.track(ev) for _ in range(40)))
    statuses = [r.status for r in results]
    assert statuses.count(ACCEPTED) == 1
    assert statuses.count(DUPLICATE) == 39
    assert len({r.position for r in results}) == 1
    assert len(stored_rows(database_url)) == 1


async def test_concurrent_duplicate_batches_are_stored_once(
    shop: IngestClient, database_url: str
) -> None:
    events = [event(user_id=f"u{i}") for i in range(50)]
    calls = [shop.track_batch(events[i % 3 :: 2]) for i in range(12)]
    results = await asyncio.gather(*calls)
    accepted = [r for batch in results for r in batch if r.status == ACCEPTED]
    assert len(accepted) == 50
    positions: dict[str, int] = {}
    for batch in results:
        for r in batch:
            assert positions.setdefault(r.event_id, r.position) == r.position
    assert len(stored_rows(database_url)) == 50


async def test_batch_gives_each_event_its_own_result(shop: IngestClient, database_url: str) -> None:
    good = event("Viewed Product")
    bad_name = event("$not_a_system_event")
    bad_coords = event(
        "Opened",
        context=ingest_pb2.Context(location=types_pb2.LatLng(latitude=120, longitude=0)),
    )
    repeat = ingest_pb2.Event()
    repeat.CopyFrom(good)
    results = await shop.track_batch([good, bad_name, bad_coords, repeat])
    assert [r.status for r in results] == [ACCEPTED, REJECTED, REJECTED, DUPLICATE]
    assert results[0].position == results[3].position
    assert [v.field for v in results[1].violations] == ["name"]
    assert [v.field for v in results[2].violations] == ["context.location.latitude"]
    stored = stored_events(database_url)
    assert [e.event_id for e in stored] == [good.event_id]


async def test_bad_track_is_invalid_argument_with_every_field(
    shop: IngestClient, database_url: str
) -> None:
    future = timestamp_pb2.Timestamp(seconds=4_000_000_000)
    bad = ingest_pb2.Event(
        name="Opened",
        event_time=future,
        properties={
            "ok": types_pb2.Value(string_value="x"),
            "nan": types_pb2.Value(number_value=float("nan")),
        },
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await shop.track(bad)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in bad_request_of(caught.value)] == [
        "event.event_id",
        "event.user_id",
        "event.event_time",
        'event.properties["nan"]',
    ]
    assert stored_rows(database_url) == []


async def test_oversized_and_empty_batches_are_refused_whole(
    shop: IngestClient, database_url: str
) -> None:
    for events, expected in (([], "send at least one event"), ([event()] * 1001, "at most 1000")):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await shop.track_batch(events)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        ((field, description),) = bad_request_of(caught.value)
        assert field == "events" and expected in description
    assert stored_rows(database_url) == []


async def test_the_app_comes_from_the_key_and_apps_are_isolated(
    channel: grpc.aio.Channel, database_url: str
) -> None:
    shop, news = IngestClient(channel, "key-shop"), IngestClient(channel, "key-news")
    shared_id = unique_id()
    a = await shop.track(event(event_id=shared_id))
    b = await news.track(event(event_id=shared_id))
    assert a.status == b.status == ACCEPTED and a.position != b.position
    assert sorted(e.app_id for e in stored_events(database_url)) == ["news", "shop"]


@pytest.mark.parametrize(
    "metadata", [[], [("authorization", "Bearer wrong")], [("authorization", "key-shop")]]
)
async def test_calls_without_a_valid_key_are_unauthenticated(
    channel: grpc.aio.Channel, database_url: str, metadata: list
) -> None:
    client = IngestClient(channel, "unused")
    client.metadata = metadata
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.track(event())
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert stored_rows(database_url) == []


async def test_identify_is_stored_idempotently(shop: IngestClient, database_url: str) -> None:
    fields = dict(
        event_id=unique_id("idn"),
        user_id="alice",
        anonymous_id="device-1",
        traits={"plan": types_pb2.Value(string_value="pro")},
        contact=ingest_pb2.Contact(email="alice@example.com", phone="+4915112345678"),
        consents=[
            ingest_pb2.Consent(
                channel=types_pb2.CHANNEL_EMAIL, status=ingest_pb2.Consent.STATUS_GRANTED
            ),
            ingest_pb2.Consent(
                channel=types_pb2.CHANNEL_SMS, status=ingest_pb2.Consent.STATUS_DENIED
            ),
        ],
        timezone="Europe/Berlin",
        location=ingest_pb2.Location(country="de", city="Berlin"),
    )
    first = await shop.identify(**fields)
    again = await shop.identify(**fields)
    assert (first.status, again.status) == (ACCEPTED, DUPLICATE)
    (stored,) = stored_events(database_url)
    assert stored.consents == {"email": True, "sms": False}
    assert stored.location == {"country": "DE", "city": "Berlin"}
    # In the log itself every personal field is sealed with the user's key; the anonymous
    # id's key is recorded as the user's (so erasing the user erases it too).
    (sealed,) = sealed_events(database_url)
    assert (sealed.traits, sealed.contact, sealed.consents, sealed.location) == ({}, {}, {}, {})
    assert sealed.timezone == "" and sealed.sealed and "alice@" not in sealed.sealed
    with psycopg.connect(database_url) as conn:
        owners = conn.execute(
            "SELECT subject, owner FROM cohortflow_user_keys ORDER BY subject"
        ).fetchall()
    assert owners == [("alice", "alice"), ("anonymous:device-1", "alice")]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await shop.identify(event_id="", user_id="bob", contact=ingest_pb2.Contact(email="nope"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in bad_request_of(caught.value)] == ["event_id", "contact.email"]


async def test_restart_keeps_data_and_idempotency(database_url: str) -> None:
    ev = event()
    app = await start(database_url)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as ch:
        first = await IngestClient(ch, "key-shop").track(ev)
    await app.stop(1)
    app = await start(database_url)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as ch:
        again = await IngestClient(ch, "key-shop").track(ev)
    await app.stop(1)
    assert again.status == DUPLICATE and again.position == first.position


async def test_health_reports_serving(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE_NAME):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_lost_database_is_unavailable_not_unknown(database_url: str, postgres: Any) -> None:
    """With the database refusing connections, calls fail UNAVAILABLE (retryable)."""
    dbname = database_url.rsplit("/", 1)[-1]
    app = await start(database_url, INGEST_DB_POOL_SIZE=1, INGEST_DB_CONNECT_TIMEOUT_S=1)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as ch:
            client = IngestClient(ch, "key-shop")
            assert (await client.track(event())).status == ACCEPTED
            with psycopg.connect(postgres.server_url, autocommit=True) as admin:
                admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (dbname,),
                )
            try:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await client.track(event())
                assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            finally:
                with psycopg.connect(postgres.server_url, autocommit=True) as admin:
                    admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
            # And it recovers by itself once the database is back.
            assert (await client.track(event())).status == ACCEPTED
    finally:
        await app.stop(1)
