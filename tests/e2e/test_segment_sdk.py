"""Segment's own Python SDK pointed at ingest: its events reach profiles and segments.

The official `segment-analytics-python` client (batches on a thread, gzip, retries,
`sentAt`, `context.library`) talks to ingest's HTTP tracking API as if it were Segment;
the projector folds what it stored, and ProfileService / SegmentService show it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest
from cohortflow.profiles.v1 import profiles_pb2, profiles_pb2_grpc
from cohortflow.segments.v1 import segments_pb2, segments_pb2_grpc
from segment.analytics import Client
from segment.analytics.request import APIError

from services.projector.grpc.segment_convert import condition_from_dict
from tests.support.infra import NatsForTests
from tests.support.ingest import auth
from tests.support.pipeline import Pipeline
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e
CARTS = {"events": {"name": "Added to Cart", "op": ">=", "value": 2}}


def send_with_the_sdk(host: str, errors: list[Any]) -> None:
    """What an app instrumented with Segment does, batched and gzip-compressed."""
    client = Client(
        "key-shop",
        host=host,
        gzip=True,
        upload_size=4,
        max_retries=1,
        on_error=lambda error, batch: errors.append((error, batch)),
    )
    client.identify(
        "alice",
        {"email": "alice@example.com", "plan": "pro", "address": {"city": "Berlin"}},
        context={"timezone": "Europe/Berlin"},
    )
    client.page("alice", "Docs", "Pricing", {"path": "/pricing"})
    for sku in ("A-1", "B-2"):
        client.track("alice", "Added to Cart", {"sku": sku, "price": 9.5})
    client.track(anonymous_id="device-7", event="Added to Cart", properties={"sku": "C-3"})
    client.alias("device-7", "bob")
    client.group("alice", "acme", {"seats": 12})
    client.screen("bob", "Checkout", "Cart")
    client.flush()
    client.shutdown()


async def test_the_segment_sdk_feeds_profiles_and_segments(
    database_url: str, nats_server: NatsForTests, tmp_path: Path
) -> None:
    pipeline = Pipeline(database_url, nats_server.url, tmp_path)
    host = f"http://{pipeline.ingest_env['INGEST_HTTP_LISTEN']}"
    try:
        pipeline.start()
        async with grpc.aio.insecure_channel(pipeline.projector_address) as channel:
            segments = segments_pb2_grpc.SegmentServiceStub(channel)
            profiles = profiles_pb2_grpc.ProfileServiceStub(channel)
            carts = segments_pb2.Segment(segment_id="carts", condition=condition_from_dict(CARTS))
            await segments.CreateSegment(
                segments_pb2.CreateSegmentRequest(segment_id="carts", segment=carts),
                metadata=auth("key-shop"),
            )
            errors: list[Any] = []
            await asyncio.to_thread(send_with_the_sdk, host, errors)
            assert errors == []

            async def profile_of(user: str, events: int) -> profiles_pb2.Profile | None:
                try:
                    reply = await profiles.GetProfile(
                        profiles_pb2.GetProfileRequest(user_id=user), metadata=auth("key-shop")
                    )
                except grpc.aio.AioRpcError as error:
                    if error.code() != grpc.StatusCode.NOT_FOUND:
                        raise
                    return None
                return reply.profile if reply.profile.event_count >= events else None

            alice = await eventually(lambda: profile_of("alice", 3), "alice's three events")
            assert alice.email == "alice@example.com"
            assert alice.timezone == "Europe/Berlin"
            assert alice.traits["plan"].string_value == "pro"
            assert alice.traits["group_id"].string_value == "acme"
            assert dict(alice.event_counts) == {"Added to Cart": 2, "Page Viewed": 1}
            member = await segments.CheckMembership(
                segments_pb2.CheckMembershipRequest(
                    segment_id="carts", user_id="alice", min_position=alice.position
                ),
                metadata=auth("key-shop"),
            )
            assert member.member
            # bob's cart was added on a device before the alias: one history now.
            bob = await eventually(lambda: profile_of("bob", 2), "bob's aliased history")
            assert dict(bob.event_counts) == {"Added to Cart": 1, "Screen Viewed": 1}

            # A call ingest refuses reaches the SDK's error handler as a 400 naming the field.
            sync = Client("key-shop", host=host, sync_mode=True)
            with pytest.raises(APIError) as error:
                sync.track("carol", "Added to Cart", {"price": float("inf")})
            assert error.value.status == 400
            assert "batch[0].properties.price" in error.value.message
    finally:
        codes = pipeline.stop()
        await pipeline.close()
    assert codes == {"services.campaign": 0, "services.projector": 0, "services.ingest": 0}
