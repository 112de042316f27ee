"""Reads across partitions: the same history folded with one partition and with eight placed
on two databases answers every read that spans users the same (a differential test through
ProfileService and SegmentService; positions differ, nothing else)."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import grpc
import psycopg
import pytest
from cohortflow.analytics.v1 import analytics_pb2
from cohortflow.analytics.v1.analytics_pb2_grpc import AnalyticsServiceStub
from cohortflow.operations.v1 import operations_pb2
from cohortflow.operations.v1.operations_pb2_grpc import OperationsServiceStub
from cohortflow.profiles.v1 import profiles_pb2
from cohortflow.segments.v1 import segments_pb2
from google.protobuf import timestamp_pb2
from google.protobuf.json_format import MessageToDict

from services.campaign.adapters.connections import connection_pool
from services.campaign.adapters.contract_reads import ContractPools
from services.campaign.adapters.profiles import PostgresProfileReader
from services.campaign.adapters.segment_members import PostgresSegmentMembers
from services.common.segment_wire import condition_from_dict
from services.eventlog.events import UserIdentified
from services.eventlog.keyring import ERASURES_TABLE
from services.eventlog.partitioned import PartitionedLog, open_partitioned_log
from services.eventlog.partitions import Deployment, partition_of
from services.migrate import migrate
from services.projector.partitions.mail import MAIL_TABLE
from tests.support.infra import PostgresForTests
from tests.support.ingest import auth
from tests.support.logevents import DAY, HOUR, T0, identify, purchase, tick, track
from tests.support.partitioned import route, wait_folded, wait_live
from tests.support.projector import InProcessProjector, in_process_projector
from tests.support.segment_calls import segment

P = 8
DAYS = 24
REDEFINED_ON = 12
APPS = {"app": "key-app", "other": "key-other"}
SEGMENTS: dict[str, dict[str, Any]] = {
    "carts": {"events": {"name": "Added to Cart", "window": "7d", "op": ">=", "value": 2}},
    "buyers": {
        "events": {
            "name": "Order Completed",
            "aggregate": "sum",
            "property": "revenue",
            "op": ">",
            "value": 40,
        }
    },
    "from-berlin": {"geo": {"cities": ["Berlin"]}},
    "engaged": {"lifecycle": ["active", "new"]},
}
CARTS_AGAIN = {"events": {"name": "Added to Cart", "window": "5d", "op": ">=", "value": 3}}
DRAFT = {"events": {"name": "Added to Cart", "window": "30d", "op": ">=", "value": 1}}
BERLIN = {"city": "Berlin", "country": "DE"}


def _apart(app: str, user: str, used: set[str], *, same_database: bool) -> str:
    """An anonymous id in another partition than `user`'s, in the same database (0-3,
    4-7) or in the other one."""
    home = partition_of(app, user, P)

    def fits(device: str) -> bool:
        there = partition_of(app, f"anonymous:{device}", P)
        return there != home and (there // 4 == home // 4) == same_database

    device = next(d for i in range(10_000) if (d := f"dev-{app}-{i}") not in used and fits(d))
    used.add(device)
    return device


@dataclass
class Story:
    before: list[object]  # up to the redefinition
    after: list[object]
    users: dict[str, list[str]]  # app -> every user id a profile may have


def story(seed: int = 13) -> Story:
    rng = random.Random(seed)
    events: list[object] = []
    users: dict[str, list[str]] = {}
    used: set[str] = set()
    plans: dict[tuple[str, str], tuple[str, int]] = {}  # (app, user) -> (device, day)
    for app in APPS:
        ids = [f"{app}-u{n}" for n in range(10 if app == "app" else 5)]
        users[app] = list(ids)
        # Anonymous first, identified later: in another partition of the same database
        # before the redefinition, in the other database after it (a version built later
        # counts a merged history only within a database: see the README).
        for n, user in enumerate(ids[:4]):
            near = n % 2 == 0
            day = rng.randrange(2, REDEFINED_ON - 1) if near else rng.randrange(13, DAYS - 3)
            plans[(app, user)] = (_apart(app, user, used, same_database=near), day)
        lone = f"lone-{app}"  # anonymous all along
        users[app].append(f"anonymous:{lone}")
        plans[(app, "")] = (lone, 99)
        users[app] += [f"anonymous:{plans[(app, user)][0]}" for user in ids[:4]]
    for day in range(DAYS):
        at = T0 + day * DAY
        events.append(tick(at))
        for app in APPS:
            for user in users[app]:
                if user.startswith("anonymous:"):
                    continue
                device, known_on = plans.get((app, user), ("", -1))
                activity = 0.75 if int(user.rsplit("u", 1)[1]) % 3 else 0.35 - day / 80
                if rng.random() > activity and day != known_on:
                    continue
                when = at + rng.randrange(1, 20) * HOUR
                if device and day < known_on:
                    named: dict[str, Any] = {"anonymous_id": device}
                    who = ""
                else:
                    named, who = {}, user
                context = BERLIN if rng.random() < 0.2 else {"city": "Paris", "country": "FR"}
                events.append(track(who, when, app=app, context=context, **named))
                if rng.random() < 0.5:
                    events.append(track(who, when + 1, "Added to Cart", app=app, **named))
                if day in (5, 15) and rng.random() < 0.3:  # a value PostgreSQL cannot store
                    events.append(track(who, when + 1, app=app, note="a\x00b", **named))
                if who and rng.random() < 0.25:
                    events.append(purchase(user, when + 2, float(rng.randrange(5, 60)), app=app))
                if device and day == known_on:
                    plan = "pro" if rng.random() < 0.5 else "free"
                    events.append(
                        identify(
                            user, when + 3, app=app, anonymous_id=device, traits={"plan": plan}
                        )
                    )
            lone, _ = plans[(app, "")]
            if rng.random() < 0.4:
                events.append(track("", at + 5 * HOUR, "Added to Cart", app=app, anonymous_id=lone))
    events.append(tick(T0 + (DAYS + 10) * DAY))
    split = next(i for i, e in enumerate(events) if e == tick(T0 + REDEFINED_ON * DAY))
    return Story(events[:split], events[split:], users)


def _ts(us: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromMicroseconds(us)
    return ts


async def _live(running: InProcessProjector, defined: segments_pb2.Segment) -> None:
    """Until the version `defined` is live (its definition folded first)."""
    stub, segment_id, version = running.segments, defined.segment_id, defined.version
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        reply = await stub.GetSegment(
            segments_pb2.GetSegmentRequest(
                segment_id=segment_id, min_position=defined.defined_position
            ),
            metadata=auth("key-app"),
        )
        if reply.segment.active_version == version and reply.segment.build.status == "live":
            return
        assert asyncio.get_running_loop().time() < deadline, f"{segment_id} v{version} not live"
        await asyncio.sleep(0.1)


async def _define(running: InProcessProjector, log: PartitionedLog) -> None:
    created = [
        await running.segments.CreateSegment(
            segments_pb2.CreateSegmentRequest(segment_id=segment_id, segment=segment(condition)),
            metadata=auth("key-app"),
        )
        for segment_id, condition in SEGMENTS.items()
    ]
    for reply in created:
        await _live(running, reply.segment)
    if log.partitions > 1:
        await wait_live(log, len(SEGMENTS))


async def _redefine(running: InProcessProjector, log: PartitionedLog) -> None:
    updated = await running.segments.UpdateSegment(
        segments_pb2.UpdateSegmentRequest(
            segment=segments_pb2.Segment(
                segment_id="carts", condition=condition_from_dict(CARTS_AGAIN)
            ),
            expected_version=1,
        ),
        metadata=auth("key-app"),
    )
    assert updated.segment.version == 2
    await _live(running, updated.segment)
    if log.partitions > 1:
        await wait_live(log, len(SEGMENTS) + 1)


async def _watch(stub: Any, key: str, cursor: str = "") -> list[tuple[str, Any]]:
    """(cursor, change) of every membership change the watch gives until it is quiet."""
    call = stub.WatchMembershipChanges(
        segments_pb2.WatchMembershipChangesRequest(after_cursor=cursor), metadata=auth(key)
    )
    out: list[tuple[str, Any]] = []
    try:
        while True:
            try:
                reply = await asyncio.wait_for(call.read(), 2.0)
            except TimeoutError:
                return out
            assert reply is not grpc.aio.EOF
            out.append((reply.cursor, reply.change))
    finally:
        call.cancel()


def _change(change: Any) -> tuple[Any, ...]:
    h = change.header
    return (
        h.user_id,
        change.segment_id,
        change.segment_version,
        change.direction,
        h.effective_time.ToMicroseconds(),
        h.cause.kind,
        tuple(h.cause.event_ids),
    )


async def answers(running: InProcessProjector, users: dict[str, list[str]]) -> dict[str, Any]:
    """Every read that spans users (and each user's own), with positions left out."""
    out: dict[str, Any] = {}
    profiles, segments = running.profiles, running.segments
    as_of = [T0 + d * DAY - 1 for d in (3, 8, 13, 20, DAYS + 1)] + [T0 + 9 * DAY + 7 * HOUR]
    for app, key in APPS.items():
        meta = auth(key)
        for when in [None, *as_of]:
            request = profiles_pb2.GetLifecycleSummaryRequest()
            if when is not None:
                request.as_of_time.CopyFrom(_ts(when))
            reply = await profiles.GetLifecycleSummary(request, metadata=meta)
            out[f"{app} summary {when}"] = (
                [(c.state, c.users) for c in reply.counts],
                reply.total_users,
            )
        for user in users[app]:
            try:
                reply = await profiles.GetProfile(
                    profiles_pb2.GetProfileRequest(user_id=user), metadata=meta
                )
            except grpc.aio.AioRpcError as error:
                out[f"{app} profile {user}"] = error.code()
                continue
            profile = reply.profile
            for field in ("position", "rfm_group", "rfm_scores"):
                profile.ClearField(field)
            out[f"{app} profile {user}"] = MessageToDict(profile)
            timeline = await profiles.ListUserTimeline(
                profiles_pb2.ListUserTimelineRequest(user_id=user, page_size=1000), metadata=meta
            )
            out[f"{app} lifecycle {user}"] = [
                (
                    e.lifecycle.from_state,
                    e.lifecycle.to_state,
                    e.effective_time.ToMicroseconds(),
                    e.cause_kind,
                )
                for e in timeline.entries
                if e.HasField("lifecycle")
            ]
            mine = await segments.ListUserSegments(
                segments_pb2.ListUserSegmentsRequest(user_id=user), metadata=meta
            )
            mine.ClearField("position")
            out[f"{app} segments of {user}"] = MessageToDict(mine)
        watched = await _watch(segments, key)
        out[f"{app} changes"] = sorted(_change(c) for _, c in watched)
        if len(watched) > 4:  # a cursor from the middle resumes after it, in every database
            middle = len(watched) // 2
            rest = await _watch(segments, key, watched[middle - 1][0])
            assert [_change(c) for _, c in rest] == [_change(c) for _, c in watched[middle:]]
    meta = auth("key-app")
    for segment_id in SEGMENTS:
        for when in [None, *as_of]:
            pages, token = [], ""
            while True:
                members = segments_pb2.ListSegmentMembersRequest(
                    segment_id=segment_id, page_size=3, page_token=token
                )
                if when is not None:
                    members.as_of_time.CopyFrom(_ts(when))
                reply = await segments.ListSegmentMembers(members, metadata=meta)
                pages.append(([m.user_id for m in reply.members], reply.total_size))
                token = reply.next_page_token
                if not token:
                    break
            out[f"members {segment_id} {when}"] = pages
        got = await segments.GetSegment(
            segments_pb2.GetSegmentRequest(segment_id=segment_id), metadata=meta
        )
        out[f"size {segment_id}"] = got.segment.size
    listed, token = [], ""
    while True:
        page = await segments.ListSegments(
            segments_pb2.ListSegmentsRequest(page_size=2, page_token=token), metadata=meta
        )
        listed.append([(s.segment_id, s.version, s.active_version, s.size) for s in page.segments])
        token = page.next_page_token
        if not token:
            break
    out["segments listed"] = listed
    out.update(await _analytics(running))
    out.update(await _quarantined(running))
    for segment_id, condition in (("carts", DRAFT), ("draft", SEGMENTS["buyers"])):
        preview = await segments.PreviewSegment(
            segments_pb2.PreviewSegmentRequest(
                segment=segments_pb2.Segment(
                    segment_id=segment_id, condition=condition_from_dict(condition)
                ),
                sample_size=4,
            ),
            metadata=meta,
        )
        for field in ("position", "took"):
            preview.ClearField(field)
        out[f"preview {segment_id}"] = MessageToDict(preview)
    return out


async def _feed(
    log: PartitionedLog, events: list[object], links: dict[tuple[str, str], str]
) -> None:
    """Route `events` as ingest would, as they come: an Identify's hand-over across
    partitions is done before the events after it arrive."""
    start = 0
    for end, event in enumerate(events, 1):
        if (isinstance(event, UserIdentified) and event.anonymous_id) or end == len(events):
            route(log, events[start:end], links)
            start = end
            await _quiet(log)


def _letters(log: PartitionedLog) -> int:
    total = 0
    for url in log.deployment.databases():
        with psycopg.connect(url) as conn:
            row = conn.execute(f"SELECT count(*) FROM {MAIL_TABLE}").fetchone()
            total += int(row[0]) if row else 0
    return total


async def _quiet(log: PartitionedLog) -> None:
    """Until every partition folded its log and no letter between partitions is on its way
    (twice in a row: a letter is written in the batch that folds its cause)."""
    calm = 0
    deadline = asyncio.get_running_loop().time() + 60
    while calm < 2:
        await wait_folded(log)
        calm = calm + 1 if await asyncio.to_thread(_letters, log) == 0 else 0
        assert asyncio.get_running_loop().time() < deadline, "letters still on their way"
        await asyncio.sleep(0.05)


async def _analytics(running: InProcessProjector) -> dict[str, Any]:
    """What the console's analytics read: series, flows and sizes from the rollups."""
    stub = AnalyticsServiceStub(running.channel)
    meta, out = auth("key-app"), {}
    start, end = _ts(T0), _ts(T0 + (DAYS + 10) * DAY)
    series = await stub.GetLifecycleSeries(
        analytics_pb2.GetLifecycleSeriesRequest(start_time=start, end_time=end), metadata=meta
    )
    out["series"] = MessageToDict(series)["days"]
    for a, b in ((3, 10), (DAYS + 3, DAYS + 10), (0, DAYS + 10)):
        flows = await stub.GetLifecycleFlows(
            analytics_pb2.GetLifecycleFlowsRequest(
                start_time=_ts(T0 + a * DAY), end_time=_ts(T0 + b * DAY)
            ),
            metadata=meta,
        )
        flows.ClearField("position")
        out[f"flows {a} {b}"] = MessageToDict(flows)
    sizes = await stub.GetSegmentSizeSeries(
        analytics_pb2.GetSegmentSizeSeriesRequest(
            segment_ids=list(SEGMENTS), start_time=start, end_time=end
        ),
        metadata=meta,
    )
    sizes.ClearField("position")
    out["size series"] = MessageToDict(sizes)
    return out


async def _campaign_reads(deployment: Deployment, users: dict[str, list[str]]) -> dict[str, Any]:
    """What campaign reads of the projector's read contract: segment members for a
    broadcast (in user order) and the profiles of recipients."""
    pools = {url: connection_pool(url, 2) for url in deployment.databases()}
    for pool in pools.values():
        await pool.open(wait=True, timeout=30)
    try:
        contract = ContractPools(pools, deployment, pools[deployment.home_url])
        out: dict[str, Any] = {
            f"broadcast to {segment_id}": await PostgresSegmentMembers(contract).members(
                "app", segment_id
            )
            for segment_id in SEGMENTS
        }
        keys = [(app, user) for app in APPS for user in users[app]]
        # An erasure (recorded in the home database) of a user whose partition is in the
        # other database (with P = 8): their profile reads as erased all the same.
        erased = next(u for u in users["app"] if partition_of("app", u, P) >= 4)
        async with pools[deployment.home_url].connection() as conn:
            await conn.execute(
                f"INSERT INTO {ERASURES_TABLE} (app_id, request_id, user_id, requested_by,"
                " key_ids, subjects) VALUES ('app', 'r1', %s, 'test', '{}', '{}')",
                (erased,),
            )
        profiles = await PostgresProfileReader(contract).profiles(keys)
        assert [key for key, p in profiles.items() if p.erased] == [("app", erased)]
        # RFM scores settle within a recompute interval with P > 1: not compared.
        out["recipients"] = {
            f"{app} {user}": replace(p, rfm_group="") for (app, user), p in sorted(profiles.items())
        }
        return out
    finally:
        for pool in pools.values():
            await pool.close()


async def _quarantined(running: InProcessProjector) -> dict[str, Any]:
    """The events each app had quarantined, read in pages of two (positions left out:
    they order the records by partition)."""
    stub = OperationsServiceStub(running.channel)
    out: dict[str, Any] = {}
    for app, key in APPS.items():
        events, token = [], ""
        while True:
            reply = await stub.ListQuarantinedEvents(
                operations_pb2.ListQuarantinedEventsRequest(page_size=2, page_token=token),
                metadata=auth(key),
            )
            events += [(e.event_id, e.user_id, e.anonymous_id, e.reason) for e in reply.events]
            token = reply.next_page_token
            if not token:
                break
        assert len(events) == len(set(events))
        out[f"{app} quarantined"] = sorted(events)
    return out


def _unfolded(log: PartitionedLog) -> int:
    """Change rows the rollups of the deployment's databases have not folded yet."""
    total = 0
    for url in log.deployment.databases():
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM projector_changes WHERE id >"
                " coalesce((SELECT last_id FROM analytics_rollup_position), 0))"
            ).fetchone()
            total += int(row[0]) if row else 0
    return total


@pytest.fixture
def databases(postgres: PostgresForTests) -> Iterator[tuple[str, str, str]]:
    """One database for P = 1; a home and a second database for P = 8 (4-7 there)."""
    urls = (postgres.create_database(), postgres.create_database(), postgres.create_database())
    yield urls
    for url in urls:
        postgres.drop_database(url)


async def fold(
    url: str, placement: str, partitions: int, nats_url: str, history: Story
) -> dict[str, Any]:
    log = open_partitioned_log(
        migrate(url, partitions=partitions, placement=placement), pool_size=2
    )
    try:
        async with in_process_projector(
            url, nats_url, COHORTFLOW_PLACEMENT=placement, PROJECTOR_ROLLUP_POLL_S=0.2
        ) as running:
            await _define(running, log)
            links: dict[tuple[str, str], str] = {}
            await _feed(log, history.before, links)
            await _redefine(running, log)
            await _feed(log, history.after, links)
            deadline = asyncio.get_running_loop().time() + 30
            while await asyncio.to_thread(_unfolded, log):
                assert asyncio.get_running_loop().time() < deadline, "rollups behind"
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # hand-overs and letters in flight
            await wait_folded(log)
            out = await answers(running, history.users)
            out.update(await _campaign_reads(log.deployment, history.users))
            return out
    finally:
        log.close()


async def test_one_partition_and_eight_on_two_databases_answer_every_read_the_same(
    databases: tuple[str, str, str], nats_server: Any
) -> None:
    single, home, second = databases
    history = story()
    one = await fold(single, "", 1, nats_server.url, history)
    eight = await fold(home, json.dumps({"4-7": second}), P, nats_server.url, history)
    assert one.keys() == eight.keys()
    differing = [key for key in one if one[key] != eight[key]]
    assert not differing, [(key, one[key], eight[key]) for key in differing[:3]]
    # The history exercised what it should: members in both databases, merges, changes.
    assert any(len(pages) > 1 for key, pages in one.items() if key.startswith("members"))
    assert len(one["app changes"]) > 20
    assert len(one["app quarantined"]) + len(one["other quarantined"]) > 2
    assert all(one[f"broadcast to {s}"] == sorted(one[f"broadcast to {s}"]) for s in SEGMENTS)
    found = [key for key, value in one.items() if " profile " in key and isinstance(value, dict)]
    assert len(one["recipients"]) == len(found)
    merged = [
        key for key, value in one.items() if "profile anonymous:dev" in key and key not in found
    ]
    assert len(merged) == 8, merged  # anonymous histories handed over to their users
    assert int(one["preview carts"]["members"]) > 0
    assert int(one["preview carts"]["entering"]) > 0
