"""One poison event in the log never stops the projector: it is isolated, recorded, skipped.

The poison events are written straight into the event log (as an old log, or one
written before ingest refused such input, may hold them), interleaved with normal
events of two apps and of the same users.
"""

from __future__ import annotations

import base64
import os
from typing import Any

import grpc
import orjson
import pytest
from cohortflow.operations.v1 import operations_pb2, operations_pb2_grpc
from eventsourcing.utils import get_topic
from grpc_health.v1 import health_pb2

from services.common.grpc.auth import ApiKeys
from services.eventlog.events import EventTracked
from services.eventlog.segments import Segment
from services.eventlog.store import EventLog, open_event_log
from services.projector import metrics
from services.projector.bootstrap import ProjectorApp, start_projector
from services.projector.rebuild import check
from tests.integration.projector.test_rebuild import rebuild
from tests.support.changes import delete_stream, read_all, unique_streams
from tests.support.ingest import auth
from tests.support.logevents import DAY, HOUR, T0, identify, purchase, tick, track
from tests.support.projector import (
    append,
    append_raw,
    health_status,
    positions_of,
    profile_counts,
    projector_settings,
    quarantine_rows,
    replay,
    wait_position,
)

KEYS = ApiKeys([("app", "key-app"), ("other", "key-other"), ("third", "key-third")])
R = operations_pb2
TRACKED = get_topic(EventTracked)


def _poisoned_history(log: EventLog) -> tuple[int, dict[int, tuple[str, int]]]:
    """A history with poison events among normal ones of two apps; the last position and
    the poison positions -> (app, reason)."""
    huge_user = os.urandom(6000).hex()  # its index rows exceed PostgreSQL's limit
    normal_1 = append(
        log,
        *_crowd(T0),
        identify("alice", T0, contact={"email": "alice@example.com"}),
        track("alice", T0 + HOUR),
        track("bob", T0 + HOUR),
        track("carol", T0 + HOUR, app="other"),
    )
    poison = append(
        log,
        track("alice", T0 + 2 * HOUR, note="a\x00b"),  # NUL in a property value
        identify("carol", T0 + 2 * HOUR, app="other", traits={"plan": "p\x00"}),
        track(huge_user, T0 + 2 * HOUR),
        track("dave", 2**63 + 5),  # an event time beyond bigint
    )
    # The same users go on; carol's NUL trait is overwritten in the same batch (the screen
    # finds it all the same, so every replay skips it whatever its batch boundaries).
    normal_2 = append(
        log,
        track("alice", T0 + 3 * HOUR),
        purchase("alice", T0 + 4 * HOUR, revenue=20.0),
        identify("carol", T0 + 3 * HOUR, app="other", traits={"plan": "pro"}),
        track("carol", T0 + 4 * HOUR, "Order Completed", app="other", revenue=5.0),
        track("bob", T0 + 5 * HOUR, **{"k\x00ey": "v"}),  # NUL in a property name
    )
    fold_fails = append(log, _malformed("erin"))
    undecodable = append_raw(log, "services.eventlog.events:NoSuchEvent", b'{"app_id": "app"}')
    unreadable = append_raw(log, TRACKED, b'{"app_id": "app", "user_id": "x"')
    (segment,) = log.save(
        Segment(
            app_id="other",
            segment_id="buyers",
            display_name="Buyers\x00",
            description="",
            definition={"event": {"name": "Order Completed", "min_count": 1}},
        )
    )
    assert segment.notification is not None
    huge_number = _segment_with_a_number_beyond_64_bits(log)
    last = append(log, *_crowd(T0 + 5 * HOUR), track("bob", T0 + 6 * HOUR), tick(T0 + 20 * DAY))[-1]
    reasons = {
        poison[0]: ("app", "unstorable_value"),
        poison[1]: ("other", "unstorable_value"),
        poison[2]: ("app", "refused_by_database"),
        poison[3]: ("app", "refused_by_database"),
        normal_2[4]: ("app", "unstorable_value"),
        fold_fails[0]: ("app", "fold_failed"),
        undecodable: ("app", "undecodable"),
        unreadable: ("", "undecodable"),
        segment.notification.id: ("other", "unstorable_value"),
        huge_number: ("other", "refused_by_database"),
    }
    assert normal_1 and last
    return last, reasons


def _segment_with_a_number_beyond_64_bits(log: EventLog) -> int:
    """A definition as a writer with another JSON encoder could store it: it folds, but its
    row for segment_versions cannot be built (orjson refuses integers beyond 64 bits)."""
    segment = Segment(
        app_id="other",
        segment_id="huge",
        display_name="Huge",
        description="",
        definition={"events": {"name": "A", "window": "3h", "op": ">=", "value": 2}},
    )
    stored = log.encode(segment.collect_events()[0])
    assert b'"value":2}' in stored.state
    return append_raw(
        log, stored.topic, stored.state.replace(b'"value":2}', b'"value":2' + b"0" * 30 + b"}")
    )


def _crowd(at: int) -> list[EventTracked]:
    """Normal traffic of 40 users in two apps around the poison events."""
    return [
        track(f"user-{i}", at + i * 1000, app="app" if i % 2 else "other")
        for i in range(40)
        for _ in range(3)
    ]


def _malformed(user: str) -> EventTracked:
    """A well-formed row whose payload the fold cannot use (a time that is no number)."""
    good = track(user, T0)
    return EventTracked(**{**vars(good), "event_time_us": "soon"})  # type: ignore[arg-type]


async def _list(port: int, key: str, page_size: int = 0) -> list[R.QuarantinedEvent]:
    out: list[R.QuarantinedEvent] = []
    token = ""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = operations_pb2_grpc.OperationsServiceStub(channel)
        while True:
            reply = await stub.ListQuarantinedEvents(
                R.ListQuarantinedEventsRequest(page_size=page_size, page_token=token),
                metadata=auth(key),
            )
            out.extend(reply.events)
            token = reply.next_page_token
            if not token:
                return out


def _counts() -> dict[str, float]:
    return {
        reason: metrics.QUARANTINED_TOTAL.labels(reason)._value.get()
        for reason in ("unstorable_value", "refused_by_database", "fold_failed", "undecodable")
    }


async def _start(database_url: str, nats_url: str, streams: Any) -> ProjectorApp:
    return await start_projector(projector_settings(database_url, nats_url), KEYS, streams=streams)


async def test_poison_events_are_quarantined_and_everything_else_goes_on(
    database_url: str, nats_server: Any
) -> None:
    streams = unique_streams()
    log = open_event_log(database_url)
    before = _counts()
    try:
        # The whole history is in the log before the projector starts: one batch.
        last, reasons = _poisoned_history(log)
        app = await _start(database_url, nats_server.url, streams)
        try:
            await wait_position(app, last)
            rows = quarantine_rows(database_url)
            assert {r[0]: (r[1], r[3]) for r in rows} == reasons

            # Every other change is published exactly once, in the order a fold of the log
            # without the quarantined events gives (alice's events after hers included).
            replayed = replay(log, set(reasons))
            expected = replayed.change_ids
            received = await read_all(nats_server.url, streams, expect=len(expected))
            assert [r.msg_id for r in received] == expected
            # The read models hold exactly that fold: nothing of a skipped event (erin, whose
            # event raised halfway through the fold, is not there at all).
            assert profile_counts(database_url) == replayed.event_counts
            assert ("app", "erin") not in replayed.event_counts
            alice = [r for r in received if r.header.user_id == "alice"]
            assert any(r.header.position > min(reasons) for r in alice)
            assert any(r.header.app_id == "other" for r in received)

            # Each app sees its own quarantined events, and only those.
            listed = await _list(app.port, "key-app", page_size=2)
            mine = sorted(p for p, (a, _) in reasons.items() if a == "app")
            assert [e.position for e in listed] == mine
            by_position = {e.position: e for e in listed}
            nul = by_position[min(reasons)]
            assert nul.kind == R.EVENT_KIND_TRACK and nul.user_id == "alice"
            assert nul.reason == R.QUARANTINE_REASON_UNSTORABLE_VALUE
            assert nul.detail == 'NUL character in properties["note"]'
            assert nul.event_time.ToMicroseconds() == T0 + 2 * HOUR
            refused = [e for e in listed if e.reason == R.QUARANTINE_REASON_REFUSED_BY_DATABASE]
            assert [len(e.user_id) for e in refused] == [200, 4]
            assert "ProgramLimitExceeded" in refused[0].detail
            assert not refused[1].HasField("event_time")  # out of any timestamp's range
            folded = [e for e in listed if e.reason == R.QUARANTINE_REASON_FOLD_FAILED]
            assert [(e.user_id, e.detail) for e in folded] == [
                ("erin", "the fold raised: TypeError")
            ]
            other = await _list(app.port, "key-other")
            assert [(e.kind, e.segment_id) for e in other] == [
                (R.EVENT_KIND_IDENTIFY, ""),
                (R.EVENT_KIND_SEGMENT, "buyers"),
                (R.EVENT_KIND_SEGMENT, "huge"),
            ]
            assert other[2].detail == (
                "the database refused its rows: TypeError while building its rows"
            )
            assert other[0].detail == 'NUL character in traits["plan"]'
            assert await _list(app.port, "key-third") == []

            assert {k: v - before[k] for k, v in _counts().items()} == {
                "unstorable_value": 4,
                "refused_by_database": 3,
                "fold_failed": 1,
                "undecodable": 2,
            }
            assert metrics.QUARANTINED._value.get() == len(reasons)
            assert await health_status(app.port) == health_pb2.HealthCheckResponse.SERVING
        finally:
            await app.stop(1)

        # A restart skips nothing again and records nothing twice; a new poison event is
        # isolated the same way, and alice's next event is folded.
        more = append(
            log, track("alice", T0 + 21 * DAY, note="\x00"), track("alice", T0 + 22 * DAY)
        )
        app = await _start(database_url, nats_server.url, streams)
        try:
            await wait_position(app, more[-1])
        finally:
            await app.stop(1)
        after_restart = quarantine_rows(database_url)
        assert after_restart[: len(rows)] == rows
        assert positions_of(after_restart) == sorted([*reasons, more[0]])
        expected = replay(log, {*reasons, more[0]}).change_ids
        received = await read_all(nats_server.url, streams, expect=len(expected))
        assert [r.msg_id for r in received] == expected

        # A rebuild from zero into a fresh schema quarantines the same events and
        # produces the same changes.
        done = rebuild(database_url, "--schema", "rb_poison")
        assert done.returncode == 0, done.stdout + done.stderr
        compared = check(database_url, "rb_poison")
        assert compared.identical and compared.compared == len(expected), compared
        rebuilt = quarantine_rows(database_url, "rb_poison")
        assert [r[:6] for r in rebuilt] == [r[:6] for r in after_restart]
    finally:
        log.close()
        await delete_stream(nats_server.url, streams)


async def test_a_poison_event_arriving_while_the_projector_runs_is_isolated(
    database_url: str, nats_server: Any
) -> None:
    streams = unique_streams()
    log = open_event_log(database_url)
    app = await _start(database_url, nats_server.url, streams)
    try:
        first = append(log, *_crowd(T0))
        await wait_position(app, first[-1])
        # Alone in its batch, then with others behind it: the commit fails on the
        # committing thread while the fold waits for more, or goes on folding.
        alone = append(log, track(os.urandom(6000).hex(), T0 + HOUR))
        await wait_position(app, alone[0])
        behind = append(log, track("late\x00", T0 + HOUR), *_crowd(T0 + 2 * HOUR))
        crowded = append(log, track("dave", 2**63 + 5), *_crowd(T0 + 3 * HOUR))
        await wait_position(app, crowded[-1])
        skipped = {alone[0], behind[0], crowded[0]}
        assert positions_of(quarantine_rows(database_url)) == sorted(skipped)
        expected = replay(log, skipped).change_ids
        received = await read_all(nats_server.url, streams, expect=len(expected))
        assert [r.msg_id for r in received] == expected
        assert await health_status(app.port) == health_pb2.HealthCheckResponse.SERVING
    finally:
        await app.stop(1)
        log.close()
        await delete_stream(nats_server.url, streams)


async def test_the_rpc_refuses_hostile_requests_clearly(
    database_url: str, nats_server: Any
) -> None:
    streams = unique_streams()
    app = await _start(database_url, nats_server.url, streams)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            stub = operations_pb2_grpc.OperationsServiceStub(channel)
            forged = [
                "\x00",
                "x" * 1_000_000,
                os.urandom(64).hex(),
                *(
                    base64.urlsafe_b64encode(orjson.dumps(cursor)).decode()
                    for cursor in (
                        {"after": "x"},
                        {"after": 2**63},
                        {"after": -1},
                        {"after": True},
                        {"after": 1.5},
                        {"after": 1, "app_id": "other"},
                        [1],
                    )
                ),
            ]
            for token in forged:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub.ListQuarantinedEvents(
                        R.ListQuarantinedEventsRequest(page_token=token), metadata=auth("key-app")
                    )
                assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, token[:40]
                assert "page_token" in (caught.value.details() or "")
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.ListQuarantinedEvents(
                    R.ListQuarantinedEventsRequest(page_size=-1), metadata=auth("key-app")
                )
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            huge = await stub.ListQuarantinedEvents(
                R.ListQuarantinedEventsRequest(page_size=2**31 - 1), metadata=auth("key-app")
            )
            assert list(huge.events) == [] and huge.next_page_token == ""
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.ListQuarantinedEvents(R.ListQuarantinedEventsRequest())
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await app.stop(1)
        await delete_stream(nats_server.url, streams)
