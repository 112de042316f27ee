"""SegmentService over gRPC, the projector in this process, real PostgreSQL and NATS."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from cohortflow.changes.v1 import changes_pb2
from cohortflow.segments.v1 import segments_pb2
from google.protobuf import duration_pb2

from services.common.grpc.errors import bad_request_of
from services.common.segment_wire import condition_from_dict
from tests.support.changes import read_all
from tests.support.ingest import auth
from tests.support.logevents import HOUR, MINUTE, T0, identify, purchase, tick, track
from tests.support.projector import InProcessProjector
from tests.support.segment_calls import append, members, segment, state_of, until

ENTERED = changes_pb2.MembershipChanged.DIRECTION_ENTERED
EXITED = changes_pb2.MembershipChanged.DIRECTION_EXITED

CARTS = {"events": {"name": "Added to Cart", "window": "1h", "op": ">=", "value": 2}}


async def test_a_segment_is_built_from_history_then_changes_live(
    projector: InProcessProjector,
) -> None:
    log, stub = projector.log, projector.segments
    streams, nats_url = projector.streams, projector.nats_url
    # History before the segment exists: u1 and u2 added to cart twice, u3 once.
    append(
        log,
        tick(T0),
        *(track(u, T0 + i * MINUTE, "Added to Cart") for u in ("u1", "u2") for i in (1, 2)),
        track("u3", T0 + 3 * MINUTE, "Added to Cart"),
        tick(T0 + 5 * MINUTE),
    )
    reply = await stub.CreateSegment(
        segments_pb2.CreateSegmentRequest(segment_id="carts", segment=segment(CARTS, "Carts")),
        metadata=auth("key-app"),
    )
    assert reply.segment.state == segments_pb2.Segment.STATE_BUILDING
    assert reply.segment.version == 1
    defined = reply.segment.defined_position

    async def active() -> bool:
        got = await state_of(stub, "carts", defined)
        return got.state == segments_pb2.Segment.STATE_ACTIVE

    await until(active)
    assert await members(stub, "carts") == {"u1", "u2"}
    got = await state_of(stub, "carts")
    assert (got.size, got.active_version, got.display_name) == (2, 1, "Carts")
    assert got.condition == condition_from_dict(CARTS)

    # Live: u3 adds again (enters); time passes an hour (u1, u2 leave, then u3 too).
    position = append(log, track("u3", T0 + 6 * MINUTE, "Added to Cart"))
    check = await stub.CheckMembership(
        segments_pb2.CheckMembershipRequest(
            segment_id="carts", user_id="u3", min_position=position
        ),
        metadata=auth("key-app"),
    )
    assert check.member
    append(log, tick(T0 + HOUR + 2 * MINUTE + 1))
    received = await read_all(nats_url, streams, expect=5, subject="*.segment.>")
    seen = [(r.header.user_id, r.message.direction, r.header.cause.kind) for r in received]
    assert seen == [
        ("u1", ENTERED, changes_pb2.Cause.KIND_REDEFINITION),
        ("u2", ENTERED, changes_pb2.Cause.KIND_REDEFINITION),
        ("u3", ENTERED, changes_pb2.Cause.KIND_EVENT),
        ("u1", EXITED, changes_pb2.Cause.KIND_TIME),
        ("u2", EXITED, changes_pb2.Cause.KIND_TIME),
    ]
    assert all(r.subject == f"{streams.subject_prefix}.app.segment.carts" for r in received)
    assert all(r.message.segment_version == 1 for r in received)
    mine = await stub.ListUserSegments(
        segments_pb2.ListUserSegmentsRequest(user_id="u3"), metadata=auth("key-app")
    )
    assert [m.segment_id for m in mine.memberships] == ["carts"]
    # Another app sees none of it.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await members(stub, "carts", key="key-other")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_redefinition_publishes_the_difference_and_silent_does_not(
    projector: InProcessProjector,
) -> None:
    log, stub = projector.log, projector.segments
    streams, nats_url = projector.streams, projector.nats_url
    append(
        log,
        tick(T0),
        identify("a", T0, traits={"plan": "pro"}),
        identify("b", T0, traits={"plan": "basic"}),
        purchase("b", T0 + MINUTE, 50.0),
    )
    pro = {"trait": {"key": "plan", "op": "=", "value": "pro"}}
    created = await stub.CreateSegment(
        segments_pb2.CreateSegmentRequest(segment_id="paying", segment=segment(pro)),
        metadata=auth("key-app"),
    )
    await state_of(stub, "paying", created.segment.defined_position)

    async def members_are(expected: set[str]) -> Any:
        async def check() -> bool:
            return await members(stub, "paying") == expected

        return check

    await until(await members_are({"a"}))
    buyers = {"any": [pro, {"events": {"name": "Order Completed", "value": 1}}]}
    updated = await stub.UpdateSegment(
        segments_pb2.UpdateSegmentRequest(
            segment=segments_pb2.Segment(
                segment_id="paying", condition=condition_from_dict(buyers)
            ),
            expected_version=1,
        ),
        metadata=auth("key-app"),
    )
    assert updated.segment.version == 2
    await until(await members_are({"a", "b"}))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpdateSegment(
            segments_pb2.UpdateSegmentRequest(
                segment=segments_pb2.Segment(
                    segment_id="paying", condition=condition_from_dict(pro)
                ),
                expected_version=1,
            ),
            metadata=auth("key-app"),
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # Back to pro only, silently: b leaves without a published change.
    await stub.UpdateSegment(
        segments_pb2.UpdateSegmentRequest(
            segment=segments_pb2.Segment(segment_id="paying", condition=condition_from_dict(pro)),
            silent=True,
        ),
        metadata=auth("key-app"),
    )
    await until(await members_are({"a"}))
    received = await read_all(nats_url, streams, expect=2, subject="*.segment.>")
    assert [
        (r.header.user_id, r.message.direction, r.message.segment_version) for r in received
    ] == [
        ("a", ENTERED, 1),
        ("b", ENTERED, 2),
    ]
    # Archiving: everyone leaves, published.
    await stub.ArchiveSegment(
        segments_pb2.ArchiveSegmentRequest(segment_id="paying"), metadata=auth("key-app")
    )
    received = await read_all(nats_url, streams, expect=3, subject="*.segment.>")
    assert (received[-1].header.user_id, received[-1].message.direction) == ("a", EXITED)
    assert (await state_of(stub, "paying")).state == segments_pb2.Segment.STATE_ARCHIVED


async def test_bad_definitions_are_refused_naming_the_node(projector: InProcessProjector) -> None:
    stub = projector.segments

    async def create(segment_id: str, condition: segments_pb2.Condition) -> list[tuple[str, str]]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateSegment(
                segments_pb2.CreateSegmentRequest(
                    segment_id=segment_id, segment=segments_pb2.Segment(condition=condition)
                ),
                metadata=auth("key-app"),
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        return bad_request_of(caught.value)

    bad_window = segments_pb2.Condition(
        all=segments_pb2.Conditions(
            conditions=[
                segments_pb2.Condition(
                    events=segments_pb2.EventCondition(
                        name="x", op="~", window=duration_pb2.Duration(seconds=-5)
                    )
                )
            ]
        )
    )
    fields = [f for f, _ in await create("ok-id", bad_window)]
    assert "segment.condition.all[0].events.op" in fields
    assert "segment.condition.all[0].events.window" in fields
    assert [f for f, _ in await create("Bad Id", condition_from_dict(CARTS))] == ["segment_id"]
    problems = await create("refs", condition_from_dict({"segment": "nope"}))
    assert problems == [("segment.condition", "refers to unknown segment 'nope'")]
    first = await stub.CreateSegment(
        segments_pb2.CreateSegmentRequest(segment_id="a", segment=segment({"lifecycle": ["new"]})),
        metadata=auth("key-app"),
    )
    await state_of(stub, "a", first.segment.defined_position)
    second = await stub.CreateSegment(
        segments_pb2.CreateSegmentRequest(segment_id="b", segment=segment({"segment": "a"})),
        metadata=auth("key-app"),
    )
    await state_of(stub, "b", second.segment.defined_position)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpdateSegment(
            segments_pb2.UpdateSegmentRequest(
                segment=segments_pb2.Segment(
                    segment_id="a", condition=condition_from_dict({"segment": "b"})
                )
            ),
            metadata=auth("key-app"),
        )
    assert "loop: a -> b -> a" in bad_request_of(caught.value)[0][1]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateSegment(
            segments_pb2.CreateSegmentRequest(
                segment_id="a", segment=segment({"lifecycle": ["new"]})
            ),
            metadata=auth("key-app"),
        )
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_watch_streams_changes_and_resumes_from_a_cursor(
    projector: InProcessProjector,
) -> None:
    log, stub = projector.log, projector.segments
    append(log, tick(T0))
    created = await stub.CreateSegment(
        segments_pb2.CreateSegmentRequest(
            segment_id="fresh", segment=segment({"lifecycle": ["new"]})
        ),
        metadata=auth("key-app"),
    )
    defined = created.segment.defined_position

    async def active() -> bool:
        got = await state_of(stub, "fresh", defined)
        return got.state == segments_pb2.Segment.STATE_ACTIVE

    await until(active)
    append(log, *(track(f"w{i}", T0 + i * MINUTE) for i in range(4)))
    call = stub.WatchMembershipChanges(
        segments_pb2.WatchMembershipChangesRequest(segment_id="fresh"), metadata=auth("key-app")
    )
    first: list[segments_pb2.WatchMembershipChangesResponse] = []
    async for item in call:
        first.append(item)
        if len(first) == 2:
            break
    call.cancel()
    assert [i.change.header.user_id for i in first] == ["w0", "w1"]
    resumed = stub.WatchMembershipChanges(
        segments_pb2.WatchMembershipChangesRequest(after_cursor=first[-1].cursor),
        metadata=auth("key-app"),
    )
    rest = []
    async for item in resumed:
        rest.append(item.change.header.user_id)
        if len(rest) == 2:
            break
    resumed.cancel()
    assert rest == ["w2", "w3"]


async def test_preview_build_progress_time_travel_and_restore(
    projector: InProcessProjector,
) -> None:
    from google.protobuf import timestamp_pb2

    log, stub = projector.log, projector.segments
    append(
        log,
        tick(T0),
        *(track(f"u{i}", T0 + i * MINUTE, "Added to Cart") for i in range(6) for _ in range(i % 3)),
        tick(T0 + 10 * MINUTE),
    )
    created = await stub.CreateSegment(
        segments_pb2.CreateSegmentRequest(segment_id="carts", segment=segment(CARTS)),
        metadata=auth("key-app"),
    )
    # The build can be watched until the version is live.
    statuses = []
    async for item in stub.WatchSegmentBuild(
        segments_pb2.WatchSegmentBuildRequest(
            segment_id="carts", min_position=created.segment.defined_position
        ),
        metadata=auth("key-app"),
    ):
        statuses.append(item.build.status)
    assert statuses[-1] == "live"
    got = await state_of(stub, "carts", created.segment.defined_position)
    assert got.build.status == "live" and got.build.events_total == got.build.events_done
    assert await members(stub, "carts") == {"u2", "u5"}

    # Preview a looser draft: who would enter, nobody leaves; nothing changes.
    loose = {"events": {"name": "Added to Cart", "window": "1h", "op": ">=", "value": 1}}
    preview = await stub.PreviewSegment(
        segments_pb2.PreviewSegmentRequest(
            segment=segments_pb2.Segment(segment_id="carts", condition=condition_from_dict(loose))
        ),
        metadata=auth("key-app"),
    )
    assert (preview.members, preview.entering, preview.exiting) == (4, 2, 0)
    assert list(preview.entering_sample) == ["u1", "u4"]
    assert preview.live_version == 1
    assert await members(stub, "carts") == {"u2", "u5"}

    # Time passes; u2 and u5 leave on the clock.
    position = append(log, tick(T0 + 2 * HOUR))
    await state_of(stub, "carts", position)
    assert await members(stub, "carts") == set()
    then = timestamp_pb2.Timestamp()
    then.FromMicroseconds(T0 + 30 * MINUTE)
    past = await stub.ListSegmentMembers(
        segments_pb2.ListSegmentMembersRequest(segment_id="carts", as_of_time=then),
        metadata=auth("key-app"),
    )
    assert [m.user_id for m in past.members] == ["u2", "u5"] and past.total_size == 2
    was = await stub.CheckMembership(
        segments_pb2.CheckMembershipRequest(segment_id="carts", user_id="u5", as_of_time=then),
        metadata=auth("key-app"),
    )
    assert was.member
    history = await stub.ListMembershipHistory(
        segments_pb2.ListMembershipHistoryRequest(user_id="u5"), metadata=auth("key-app")
    )
    assert [(c.direction, c.header.cause.kind) for c in history.changes] == [
        (ENTERED, changes_pb2.Cause.KIND_REDEFINITION),
        (EXITED, changes_pb2.Cause.KIND_TIME),
    ]

    # Restore: version 3 gets version 1's definition back.
    await stub.UpdateSegment(
        segments_pb2.UpdateSegmentRequest(
            segment=segments_pb2.Segment(segment_id="carts", condition=condition_from_dict(loose))
        ),
        metadata=auth("key-app"),
    )
    restored = await stub.RestoreSegmentVersion(
        segments_pb2.RestoreSegmentVersionRequest(segment_id="carts", version=1),
        metadata=auth("key-app"),
    )
    assert restored.segment.version == 3
    assert restored.segment.condition == condition_from_dict(CARTS)
