"""Ingest on a partitioned log: each user's events in their partition, once each."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import psycopg
import pytest
from cohortflow.ingest.v1 import ingest_pb2

from services.common.grpc.auth import ApiKeys
from services.eventlog.deployment_store import DeploymentMismatch, load_deployment
from services.eventlog.partitions import decode_position, partition_of
from services.ingest.bootstrap import IngestApp, start_ingest
from services.ingest.config import IngestSettings
from services.migrate import migrate
from tests.support.infra import PostgresForTests
from tests.support.ingest import ACCEPTED, DUPLICATE, IngestClient, auth, event, unique_id

KEYS = ApiKeys([("shop", "key-shop")])
P = 4


@pytest.fixture
def partitioned_url(postgres: PostgresForTests) -> AsyncIterator[str]:
    url = postgres.create_database()
    migrate(url, partitions=P)
    yield url
    postgres.drop_database(url)


@pytest.fixture
async def shop(partitioned_url: str) -> AsyncIterator[IngestClient]:
    settings = IngestSettings(DATABASE_URL=partitioned_url, INGEST_LISTEN="127.0.0.1:0")
    app: IngestApp = await start_ingest(settings, KEYS)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        yield IngestClient(channel, "key-shop")
    await app.stop(1)


def rows(url: str, partition: int) -> list[tuple[int, str]]:
    """(notification id, user or anonymous id) of every event stored in a partition."""
    with psycopg.connect(url) as conn:
        found = conn.execute(
            f"SELECT notification_id, convert_from(state, 'UTF8')::jsonb"
            f" FROM cohortflow_p{partition}_events ORDER BY notification_id"
        ).fetchall()
    return [(n, s.get("user_id") or "anonymous:" + s.get("anonymous_id", "")) for n, s in found]


async def test_each_event_lands_in_its_users_partition_once(
    shop: IngestClient, partitioned_url: str
) -> None:
    users = [f"user-{i}" for i in range(24)]
    events = [event("Opened", user_id=u, event_id=f"e-{u}") for u in users]
    response = await shop.stub.TrackBatch(
        ingest_pb2.TrackBatchRequest(events=events), metadata=shop.metadata
    )
    assert [r.status for r in response.results] == [ACCEPTED] * len(users)
    for user, result in zip(users, response.results, strict=True):
        partition, notification_id = decode_position(result.position)
        assert partition == partition_of("shop", user, P)
        assert (notification_id, user) in rows(partitioned_url, partition)
    assert len({decode_position(r.position)[0] for r in response.results}) == P

    again = await shop.stub.TrackBatch(
        ingest_pb2.TrackBatchRequest(events=events), metadata=shop.metadata
    )
    assert [r.status for r in again.results] == [DUPLICATE] * len(users)
    assert [r.position for r in again.results] == [r.position for r in response.results]
    assert sum(len(rows(partitioned_url, p)) for p in range(P)) == len(users)


async def test_anonymous_events_follow_the_link_to_their_users_partition(
    shop: IngestClient, partitioned_url: str
) -> None:
    # An anonymous id and a user that hash to different partitions.
    user = "known-user"
    anonymous = next(
        f"device-{i}"
        for i in range(1000)
        if partition_of("shop", f"anonymous:device-{i}", P) != partition_of("shop", user, P)
    )
    before = await shop.track(event("Opened", user_id="", anonymous_id=anonymous))
    assert decode_position(before.position)[0] == partition_of("shop", f"anonymous:{anonymous}", P)
    identified = await shop.stub.Identify(
        ingest_pb2.IdentifyRequest(event_id=unique_id(), user_id=user, anonymous_id=anonymous),
        metadata=auth("key-shop"),
    )
    assert decode_position(identified.result.position)[0] == partition_of("shop", user, P)
    after = await shop.track(event("Opened", user_id="", anonymous_id=anonymous))
    assert decode_position(after.position)[0] == partition_of("shop", user, P)


def test_the_number_of_partitions_is_fixed_at_creation(partitioned_url: str) -> None:
    assert load_deployment(partitioned_url, None, "").partitions == P
    with pytest.raises(DeploymentMismatch, match="created with 4 partitions"):
        load_deployment(partitioned_url, 8, "")
    with pytest.raises(DeploymentMismatch, match="created with 4 partitions"):
        migrate(partitioned_url, partitions=2)
    assert migrate(partitioned_url).partitions == P
