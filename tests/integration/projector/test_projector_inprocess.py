"""The projector in this process, on real PostgreSQL and NATS: log in, changes out."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from cohortflow.profiles.v1 import profiles_pb2, profiles_pb2_grpc
from cohortflow.types.v1 import types_pb2
from google.protobuf import timestamp_pb2

from services.eventlog.store import EventLog, open_event_log
from services.projector.bootstrap import ProjectorApp, start_projector
from services.projector.config import ProjectorSettings
from tests.support.changes import delete_stream, read_all, unique_streams
from tests.support.ingest import auth
from tests.support.logevents import DAY, HOUR, T0, identify, purchase, tick, track
from tests.support.projector import KEYS, InProcessProjector


def append(log: EventLog, *events: object) -> int:
    outcome = log.append_new([log.encode(e) for e in events])
    return max(outcome.inserted.values())


async def wait_position(app: ProjectorApp, position: int, within: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while app.projection.position < position:
        assert asyncio.get_running_loop().time() < deadline, "projector did not catch up"
        await asyncio.sleep(0.05)


async def test_lifecycle_and_rfm_changes_reach_the_stream_and_profiles(
    projector: InProcessProjector,
) -> None:
    app, log = projector.app, projector.log
    streams, nats_url = projector.streams, projector.nats_url
    last = append(
        log,
        identify(
            "alice",
            T0,
            traits={"plan": "pro"},
            contact={"email": "a@example.com"},
            consents={"email": True},
            timezone="Europe/Berlin",
        ),
        track("alice", T0 + HOUR),
        purchase("alice", T0 + 2 * HOUR, revenue=30.0),
        track("bob", T0 + 3 * HOUR),
        tick(T0 + 20 * DAY),
    )
    await wait_position(app, last)
    received = await read_all(nats_url, streams, expect=6)
    kinds = [(r.subject.rsplit(".", 1)[-1], r.header.user_id) for r in received]
    assert ("lifecycle", "alice") in kinds and ("rfm", "alice") in kinds
    # Every message is deduplicated by its change id, and users' sequences have no gaps.
    assert all(r.msg_id == r.header.change_id for r in received)
    for user in ("alice", "bob"):
        seqs = [r.header.user_sequence for r in received if r.header.user_id == user]
        assert seqs == list(range(1, len(seqs) + 1))
    bob = [r.message for r in received if r.header.user_id == "bob"]
    assert [(m.from_state, m.to_state) for m in bob] == [
        (types_pb2.LIFECYCLE_STATE_UNSPECIFIED, types_pb2.LIFECYCLE_STATE_NEW),
        (types_pb2.LIFECYCLE_STATE_NEW, types_pb2.LIFECYCLE_STATE_ACTIVE),
        (types_pb2.LIFECYCLE_STATE_ACTIVE, types_pb2.LIFECYCLE_STATE_DORMANT),
    ]
    dormant = bob[-1].header
    assert dormant.cause.kind == dormant.cause.KIND_TIME
    assert dormant.effective_time.ToMicroseconds() == T0 + 3 * HOUR + 14 * DAY

    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stub = profiles_pb2_grpc.ProfileServiceStub(channel)
        reply = await stub.GetProfile(
            profiles_pb2.GetProfileRequest(user_id="alice", min_position=last),
            metadata=auth("key-app"),
        )
        alice = reply.profile
        assert alice.email == "a@example.com" and alice.consents == {"email": True}
        assert alice.traits["plan"].string_value == "pro"
        assert alice.lifecycle_state == types_pb2.LIFECYCLE_STATE_DORMANT
        assert alice.event_counts == {"App Opened": 1, "Order Completed": 1}
        assert alice.rfm_group != types_pb2.RFM_GROUP_UNSPECIFIED

        summary = await stub.GetLifecycleSummary(
            profiles_pb2.GetLifecycleSummaryRequest(), metadata=auth("key-app")
        )
        counts = {c.state: c.users for c in summary.counts}
        assert counts[types_pb2.LIFECYCLE_STATE_DORMANT] == 2 and summary.total_users == 2
        past = timestamp_pb2.Timestamp()
        past.FromMicroseconds(T0 + 5 * HOUR)
        then = await stub.GetLifecycleSummary(
            profiles_pb2.GetLifecycleSummaryRequest(as_of_time=past), metadata=auth("key-app")
        )
        assert {c.state: c.users for c in then.counts}[types_pb2.LIFECYCLE_STATE_NEW] == 2

        timeline = await stub.ListUserTimeline(
            profiles_pb2.ListUserTimelineRequest(user_id="alice", page_size=2),
            metadata=auth("key-app"),
        )
        assert len(timeline.entries) == 2 and timeline.next_page_token
        rest = await stub.ListUserTimeline(
            profiles_pb2.ListUserTimelineRequest(
                user_id="alice", page_token=timeline.next_page_token
            ),
            metadata=auth("key-app"),
        )
        sequences = [e.user_sequence for e in [*timeline.entries, *rest.entries]]
        assert sequences == list(range(1, len(sequences) + 1))

        # Another app's key sees nothing of this app.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetProfile(
                profiles_pb2.GetProfileRequest(user_id="alice"), metadata=auth("key-other")
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_restart_resumes_without_applying_anything_twice(
    database_url: str, nats_server
) -> None:
    streams = unique_streams()
    settings = ProjectorSettings(
        DATABASE_URL=database_url,
        NATS_URL=nats_server.url,
        PROJECTOR_LISTEN="127.0.0.1:0",
        PROJECTOR_TICK_INTERVAL_S=0,
    )
    log = open_event_log(database_url)
    try:
        app = await start_projector(settings, KEYS, streams=streams)
        first = append(log, track("u", T0), tick(T0 + 8 * DAY))
        await wait_position(app, first)
        await app.stop(1)
        second = append(log, tick(T0 + 15 * DAY), track("u", T0 + 16 * DAY))
        app = await start_projector(settings, KEYS, streams=streams)
        await wait_position(app, second)
        await app.stop(1)
        received = await read_all(nats_server.url, streams, expect=4)
        states = [(r.message.from_state, r.message.to_state) for r in received]
        assert states == [
            (0, types_pb2.LIFECYCLE_STATE_NEW),
            (types_pb2.LIFECYCLE_STATE_NEW, types_pb2.LIFECYCLE_STATE_ACTIVE),
            (types_pb2.LIFECYCLE_STATE_ACTIVE, types_pb2.LIFECYCLE_STATE_DORMANT),
            (types_pb2.LIFECYCLE_STATE_DORMANT, types_pb2.LIFECYCLE_STATE_REACTIVATED),
        ]
        assert [r.header.user_sequence for r in received] == [1, 2, 3, 4]
    finally:
        log.close()
        await delete_stream(nats_server.url, streams)


async def test_a_lost_notify_is_recovered_by_the_watchdog(
    projector: InProcessProjector, database_url: str
) -> None:
    import psycopg

    from services.projector import metrics

    app, log = projector.app, projector.log
    streams, nats_url = projector.streams, projector.nats_url
    # Let the projector finish its start-up read and go idle, waiting for a NOTIFY.
    await asyncio.to_thread(app.projection.ready.wait, 10)
    await asyncio.sleep(0.6)
    before = metrics.WATCHDOG_RECOVERIES._value.get()
    # Write an event the way a writer would, but without the NOTIFY.
    stored = log.encode(track("quiet", T0))
    with psycopg.connect(database_url) as conn:
        position = conn.execute(
            "INSERT INTO cohortflow_events (originator_id, originator_version, topic, state)"
            " VALUES (%s, 1, %s, %s) RETURNING notification_id",
            (stored.originator_id, stored.topic, stored.state),
        ).fetchone()[0]
    await wait_position(app, position, within=10)
    assert metrics.WATCHDOG_RECOVERIES._value.get() > before
    (received,) = await read_all(nats_url, streams, expect=1)
    assert received.header.user_id == "quiet"
