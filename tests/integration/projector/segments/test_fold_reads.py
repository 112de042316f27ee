"""What a client reads of the fold: change dating in membership history, as-of queries and
timelines, the past flagged, and GetProfile's raw RFM values and resolved location (the
projector in this process, real PostgreSQL and NATS)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from cohortflow.changes.v1 import changes_pb2
from cohortflow.profiles.v1 import profiles_pb2, profiles_pb2_grpc
from cohortflow.segments.v1 import segments_pb2, segments_pb2_grpc
from cohortflow.types.v1 import types_pb2
from google.protobuf import timestamp_pb2

from services.common.grpc.auth import ApiKeys
from tests.support.ingest import auth
from tests.support.logevents import DAY, HOUR, MINUTE, T0, identify, purchase, tick, ticks, track
from tests.support.projector import in_process_projector
from tests.support.segment_history import (
    save_segments,
    wait_settled,
)

KEYS = ApiKeys([("app", "key-app")])
SECOND = 1_000_000
TICK = T0 + 18 * HOUR + 16 * MINUTE  # the recorded clock: 18:16:00
CART = TICK + 29 * SECOND  # the event: 18:16:29
SEGMENTS = {
    "carted": {"events": {"name": "Added to Cart", "window": "1h", "op": ">=", "value": 1}},
    "abandoned": {
        "inaction": {"did": "Added to Cart", "not_did": "Order Completed", "within": "24h"}
    },
}
ENTERED = changes_pb2.MembershipChanged.DIRECTION_ENTERED
EXITED = changes_pb2.MembershipChanged.DIRECTION_EXITED
KIND = changes_pb2.Cause


def ts(us: int) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromMicroseconds(us)
    return out


async def test_changes_are_dated_when_they_took_effect_in_every_read(
    database_url: str, nats_server: Any
) -> None:
    async with in_process_projector(database_url, nats_server.url, KEYS) as running:
        app, log = running.app, running.log
        log.append_new([log.encode(tick(TICK))])
        save_segments(log, SEGMENTS)
        await wait_settled(app, log, len(SEGMENTS))
        log.append_new(
            [
                log.encode(e)
                for e in [
                    track("u", CART, "Added to Cart"),
                    # A cart of another user that arrives 30 hours late.
                    track("late", TICK - 30 * HOUR, "Added to Cart"),
                    *ticks(TICK + MINUTE, TICK + DAY + 2 * MINUTE, MINUTE),
                ]
            ]
        )
        await wait_settled(app, log, len(SEGMENTS))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            segments = segments_pb2_grpc.SegmentServiceStub(channel)
            profiles = profiles_pb2_grpc.ProfileServiceStub(channel)
            meta = auth("key-app")

            history = await segments.ListMembershipHistory(
                segments_pb2.ListMembershipHistoryRequest(user_id="u"), metadata=meta
            )
            dated = [
                (
                    c.segment_id,
                    c.direction,
                    c.header.cause.kind,
                    c.header.effective_time.ToMicroseconds(),
                    c.header.historical,
                )
                for c in history.changes
            ]
            assert dated == [
                ("carted", ENTERED, KIND.KIND_EVENT, CART, False),  # not 18:16:00
                ("carted", EXITED, KIND.KIND_TIME, CART + HOUR, False),
                ("abandoned", ENTERED, KIND.KIND_TIME, CART + DAY, False),  # not 18:17:00
            ]
            assert history.changes[0].header.recorded_time.ToMicroseconds() == TICK

            async def member(segment_id: str, user: str, at: int) -> tuple[bool, int]:
                reply = await segments.CheckMembership(
                    segments_pb2.CheckMembershipRequest(
                        segment_id=segment_id, user_id=user, as_of_time=ts(at)
                    ),
                    metadata=meta,
                )
                return reply.member, reply.since_time.ToMicroseconds()

            assert (await member("carted", "u", CART - SECOND))[0] is False
            assert await member("carted", "u", CART) == (True, CART)
            assert (await member("abandoned", "u", CART + DAY - SECOND))[0] is False
            assert await member("abandoned", "u", CART + DAY) == (True, CART + DAY)

            async def members_at(segment_id: str, at: int) -> set[str]:
                reply = await segments.ListSegmentMembers(
                    segments_pb2.ListSegmentMembersRequest(
                        segment_id=segment_id, as_of_time=ts(at)
                    ),
                    metadata=meta,
                )
                return {m.user_id for m in reply.members}

            # The late cart: "abandoned" since its 24 hours ran out, 6 hours before the
            # clock that learnt of it; delivered as news about the past.
            assert await members_at("abandoned", TICK - 6 * HOUR - SECOND) == set()
            assert await members_at("abandoned", TICK - 6 * HOUR) == {"late"}
            (late,) = (
                await segments.ListMembershipHistory(
                    segments_pb2.ListMembershipHistoryRequest(user_id="late"), metadata=meta
                )
            ).changes
            assert late.header.effective_time.ToMicroseconds() == TICK - 6 * HOUR
            assert late.header.historical and late.header.lateness.ToSeconds() == 6 * 3600

            timeline = await profiles.ListUserTimeline(
                profiles_pb2.ListUserTimelineRequest(user_id="u"), metadata=meta
            )
            first = timeline.entries[0]
            assert first.lifecycle.to_state == types_pb2.LIFECYCLE_STATE_NEW
            assert first.effective_time.ToMicroseconds() == CART and not first.historical


async def test_get_profile_shows_the_values_behind_rfm_and_where_geo_places_the_user(
    database_url: str, nats_server: Any
) -> None:
    mitte = {"country": "DE", "city": "Berlin", "latitude": 52.52, "longitude": 13.405}
    async with in_process_projector(database_url, nats_server.url, KEYS) as running:
        app, log = running.app, running.log
        log.append_new(
            [
                log.encode(e)
                for e in [
                    tick(T0),
                    identify("alice", T0 + MINUTE, location={"country": "DE", "city": "Berlin"}),
                    track("alice", T0 + 2 * MINUTE, context=mitte),
                    purchase("alice", T0 + 3 * MINUTE, revenue=10.0),
                    purchase("alice", T0 + DAY, revenue=30.0),
                    purchase("bob", T0 + DAY + HOUR, revenue=5.0),
                    tick(T0 + 3 * DAY),
                ]
            ]
        )
        await wait_settled(app, log, 0)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            stub = profiles_pb2_grpc.ProfileServiceStub(channel)
            reply = await stub.GetProfile(
                profiles_pb2.GetProfileRequest(user_id="alice"), metadata=auth("key-app")
            )
    alice = reply.profile
    scores = alice.rfm_scores
    # Of two purchasers alice bought before bob (R = ceil(5 * 1/2) = 3), and more often and
    # more than him: she beats half of them (F = M = 1 + floor(5 * 1/2) = 3).
    assert (scores.recency, scores.frequency, scores.monetary) == (3, 3, 3)
    assert scores.purchases == 2 and scores.monetary_value == 40.0
    assert scores.recency_days == 2.0  # at the recorded clock, day 3; last purchase day 1
    assert alice.rfm_group == types_pb2.RFM_GROUP_NEED_ATTENTION
    # Identify said Berlin without coordinates; events carried them.
    assert (alice.country, alice.city, alice.HasField("location")) == ("DE", "Berlin", False)
    assert (alice.geo_country, alice.geo_city) == ("DE", "Berlin")
    assert (alice.geo_location.latitude, alice.geo_location.longitude) == (52.52, 13.405)


async def test_a_corrected_churn_is_counted_as_its_correction_at_every_time(
    database_url: str, nats_server: Any
) -> None:
    # Churned at day 30 (the clock stood still), then an event of day 26 arrives: the
    # projector publishes churned -> reactivated dated day 26, before the churn it
    # corrects. As of any day from 26 on the user is reactivated, as GetProfile says, in
    # GetLifecycleSummary and in the console's rollups (AnalyticsService) alike.
    from cohortflow.analytics.v1 import analytics_pb2, analytics_pb2_grpc

    late = track("u", T0 + 26 * DAY, received=T0 + 32 * DAY)
    events = [tick(T0), track("u", T0), track("v", T0 + DAY), tick(T0 + 32 * DAY), late]
    async with in_process_projector(database_url, nats_server.url, KEYS) as running:
        app, log = running.app, running.log
        log.append_new([log.encode(e) for e in [*events, tick(T0 + 32 * DAY + MINUTE)]])
        await wait_settled(app, log, 0)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            profiles = profiles_pb2_grpc.ProfileServiceStub(channel)
            analytics = analytics_pb2_grpc.AnalyticsServiceStub(channel)
            meta = auth("key-app")

            async def summary(day: int | None) -> dict[str, int]:
                request = profiles_pb2.GetLifecycleSummaryRequest()
                if day is not None:
                    request.as_of_time.CopyFrom(ts(T0 + (day + 1) * DAY - 1))
                reply = await profiles.GetLifecycleSummary(request, metadata=meta)
                names = types_pb2.LifecycleState
                return {names.Name(c.state)[16:].lower(): c.users for c in reply.counts if c.users}

            (profile,) = [
                (
                    await profiles.GetProfile(
                        profiles_pb2.GetProfileRequest(user_id="u"), metadata=meta
                    )
                ).profile
            ]
            assert profile.lifecycle_state == types_pb2.LIFECYCLE_STATE_REACTIVATED
            now = await summary(None)
            assert now == {"reactivated": 1, "churned": 1}
            assert await summary(32) == now  # not churned twice over
            assert await summary(27) == {"reactivated": 1, "dormant": 1}
            assert await summary(20) == {"dormant": 2}
            # The rollups (folded in the background) count the same at every day's end.
            for _ in range(100):
                series = await analytics.GetLifecycleSeries(
                    analytics_pb2.GetLifecycleSeriesRequest(
                        start_time=ts(T0), end_time=ts(T0 + 32 * DAY)
                    ),
                    metadata=meta,
                )
                if series.position >= log.head_position() - 1:
                    break
                await asyncio.sleep(0.1)
            names = types_pb2.LifecycleState
            for day, counts in enumerate(series.days):
                shown = {
                    names.Name(c.state)[16:].lower(): c.users for c in counts.counts if c.users
                }
                assert shown == await summary(day), day
