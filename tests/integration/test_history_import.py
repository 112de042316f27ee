"""HistoryImportService over real gRPC and PostgreSQL, with one partition and with four:
an unsorted upload comes out of each partition's log sorted, with the app's clock ticks
and the job's markers where the rule puts them, each event once, even across a restart."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import orjson
import psycopg
import pytest
from cohortflow.ingest.v1 import history_pb2, ingest_pb2

from services.common.grpc.auth import ApiKeys
from services.common.grpc.errors import bad_request_of
from services.eventlog.events import (
    EventTracked,
    HistoryImportFinished,
    HistoryImportStarted,
    UserIdentified,
)
from services.eventlog.partitioned import open_partitioned_log
from services.eventlog.partitions import ANONYMOUS_PREFIX, Deployment, decode_position
from services.eventlog.store import open_event_log
from services.ingest.adapters.history_jobs import HistoryJobs
from services.ingest.adapters.history_progress import AppendProgress, JobLease
from services.ingest.adapters.history_staging import HistoryStaging
from services.ingest.adapters.identity_links import IdentityLinks
from services.ingest.bootstrap import IngestApp, start_ingest
from services.ingest.config import IngestSettings
from services.ingest.domain.history_clock import history_ticks
from services.ingest.history_appender import HistoryAppender
from services.ingest.history_loop import HistoryLoop
from services.migrate import migrate
from tests.support.history import (
    DONE,
    STAGING,
    Entry,
    HistoryClient,
    at,
    history_of,
    is_tick,
    is_user_event,
    job_uuid,
    partition_logs,
)
from tests.support.infra import PostgresForTests
from tests.support.ingest import ACCEPTED, DUPLICATE, REJECTED, IngestClient, unique_id
from tests.support.waiting import eventually

KEYS = ApiKeys([("shop", "key-shop"), ("news", "key-news")])
DAY = 86_400_000_000
START = 1_748_736_000_000_000  # 2025-06-01T00:00:00Z
# Small transactions, so a history of a few hundred events takes many chunks.
SMALL = {"INGEST_MAX_BATCH_EVENTS": 25, "INGEST_HISTORY_POLL_S": 0.2}


@pytest.fixture(params=[1, 4], ids=["P1", "P4"])
def deployment(request: pytest.FixtureRequest, postgres: PostgresForTests) -> Any:
    url = postgres.create_database()
    yield migrate(url, partitions=request.param)
    postgres.drop_database(url)


async def start(deployment: Deployment, **overrides: Any) -> IngestApp:
    settings = IngestSettings(
        DATABASE_URL=deployment.home_url, INGEST_LISTEN="127.0.0.1:0", **{**SMALL, **overrides}
    )
    return await start_ingest(settings, KEYS)


@pytest.fixture
async def ingest(deployment: Deployment) -> AsyncIterator[IngestApp]:
    app = await start(deployment)
    yield app
    await app.stop(1)


@pytest.fixture
async def channel(ingest: IngestApp) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{ingest.port}") as ch:
        yield ch


@dataclass
class History:
    """A shuffled history: events of users and of a device that a user identifies as."""

    events: list[ingest_pb2.Event]
    identifies: list[ingest_pb2.IdentifyRequest]
    user: str
    device: str
    linked_at: int

    @property
    def times(self) -> list[int]:
        return [e.event_time.ToMicroseconds() for e in [*self.events, *self.identifies]]


def make_history(tag: str, count: int = 240, seed: int = 1) -> History:
    rng = random.Random(seed)
    user, device = f"{tag}-u0", f"{tag}-device"
    linked_at = START + DAY + 7
    events = [
        ingest_pb2.Event(
            event_id=f"{tag}-e{i}",
            user_id=f"{tag}-u{i % 9}",
            name=rng.choice(["App Opened", "Added to Cart", "Order Completed"]),
            event_time=at(START + rng.randrange(0, 3 * DAY)),
        )
        for i in range(count)
    ]
    events += [
        ingest_pb2.Event(
            event_id=f"{tag}-anon{i}",
            anonymous_id=device,
            name="App Opened",
            event_time=at(START + i * DAY // 4),
        )
        for i in range(12)
    ]
    # Two events at the same microsecond as the Identify: it goes first.
    events.append(
        ingest_pb2.Event(
            event_id=f"{tag}-same", user_id=user, name="Signed Up", event_time=at(linked_at)
        )
    )
    identifies = [
        ingest_pb2.IdentifyRequest(
            event_id=f"{tag}-link", user_id=user, anonymous_id=device, event_time=at(linked_at)
        )
    ]
    rng.shuffle(events)
    return History(events, identifies, user, device, linked_at)


async def upload_all(
    client: HistoryClient, job_id: str, history: History
) -> list[ingest_pb2.EventResult]:
    """Upload in three unsorted calls; every item's result (events, then the Identify)."""
    results: list[ingest_pb2.EventResult] = []
    identified: list[ingest_pb2.EventResult] = []
    third = len(history.events) // 3
    for n, part in enumerate(
        [history.events[:third], history.events[third : 2 * third], history.events[2 * third :]]
    ):
        reply = await client.upload(job_id, part, history.identifies if n == 1 else [])
        results += reply.event_results
        identified += reply.identify_results
    return results + identified


def statuses(results: list[ingest_pb2.EventResult]) -> list[int]:
    return [r.status for r in results]


def check_log(
    deployment: Deployment, job: history_pb2.HistoryImport, history: History, app: str = "shop"
) -> list[list[Entry]]:
    """What the contract with the projector promises, partition by partition."""
    logs = partition_logs(deployment)
    expected_ticks = history_ticks(history.times)
    seen: Counter[str] = Counter()
    for partition, entries in enumerate(logs):
        part = history_of(entries, job.job_id)
        first, last = part[0], part[-1]
        assert isinstance(first.event, HistoryImportStarted)
        assert first.event.first_event_us == min(history.times)
        assert isinstance(last.event, HistoryImportFinished)
        assert last.event.events == len(history.times)
        assert job.started_positions[partition] == first.position
        assert job.finished_positions[partition] == last.position
        assert decode_position(first.position)[0] == partition
        ticks = [e.event.tick_time_us for e in part if is_tick(e)]
        assert ticks == expected_ticks
        users = [e for e in part if is_user_event(e)]
        assert [e.sort_key for e in users] == sorted(e.sort_key for e in users)
        for index, entry in enumerate(part):
            if is_tick(entry):
                before = [e.event.event_time_us for e in part[:index] if is_user_event(e)]
                after = [e.event.event_time_us for e in part[index:] if is_user_event(e)]
                assert all(t < entry.event.tick_time_us for t in before)
                assert all(t >= entry.event.tick_time_us for t in after)
        for entry in users:
            assert entry.event.history_job == job.job_id
            assert entry.event.app_id == app
            seen[entry.event.event_id] += 1
            assert partition == _expected_partition(deployment, app, entry.event, history)
    assert seen == Counter({item.event_id: 1 for item in [*history.events, *history.identifies]})
    return logs


def _expected_partition(
    deployment: Deployment, app: str, event: EventTracked | UserIdentified, history: History
) -> int:
    if event.user_id:
        return deployment.partition_of(app, event.user_id)
    # Before the link the device's own partition; from the Identify on, the user's.
    linked = event.event_time_us > history.linked_at
    key = history.user if linked else ANONYMOUS_PREFIX + event.anonymous_id
    return deployment.partition_of(app, key)


async def test_an_unsorted_upload_is_appended_sorted_with_ticks_and_markers_once(
    channel: grpc.aio.Channel, deployment: Deployment
) -> None:
    shop = HistoryClient(channel, "key-shop")
    history = make_history(unique_id("h"))
    job = await shop.start(requested_by="test")
    assert job.state == STAGING and job.requested_by == "test"
    uploaded = await upload_all(shop, job.job_id, history)
    assert statuses(uploaded) == [ACCEPTED] * len(history.times)

    # The same items again in this job: DUPLICATE of the job, no position yet.
    again = await shop.upload(job.job_id, history.events[:5])
    assert [(r.status, r.position) for r in again.event_results] == [(DUPLICATE, 0)] * 5
    assert again.job.staged_count == len(history.times)
    assert again.job.duplicate_count == 5

    finished = await shop.finish(job.job_id)
    assert finished.state in (history_pb2.HistoryImport.STATE_APPENDING, DONE)
    done = await eventually(lambda: shop.done(job.job_id), "the job appended")
    assert done.appended_count == done.processed_count == len(history.times)
    logs = check_log(deployment, done, history)
    assert _staged_rows(deployment) == 0

    # A new job with the same events: every one DUPLICATE of the log, with its position;
    # it staged nothing, so it is done at once and appends nothing, not even markers.
    positions = {e.event.event_id: e.position for part in logs for e in part if is_user_event(e)}
    second = await shop.start()
    again_all = await upload_all(shop, second.job_id, history)
    assert statuses(again_all) == [DUPLICATE] * len(history.times)
    assert {r.event_id: r.position for r in again_all} == positions
    before = [len(entries) for entries in logs]
    closed = await shop.finish(second.job_id)
    assert closed.state == DONE and not closed.started_positions
    assert [len(entries) for entries in partition_logs(deployment)] == before


class Crash(Exception):
    """Stands for the process dying right after a log transaction committed."""


class CrashingLog:
    """The partitioned log, failing right after its `after`-th append committed."""

    def __init__(self, log: Any, after: int) -> None:
        self._log = log
        self._left = after

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)

    def append(self, partition: int, stored: Any) -> Any:
        done = self._log.append(partition, stored)
        self._left -= 1
        if self._left == 0:
            raise Crash
        return done


async def test_a_restarted_ingest_resumes_appending_and_stores_nothing_twice(
    deployment: Deployment,
) -> None:
    history = make_history(unique_id("r"), count=300, seed=2)
    first = await start(deployment)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{first.port}") as ch:
        shop = HistoryClient(ch, "key-shop")
        job = await shop.start()
        await upload_all(shop, job.job_id, history)
    await first.stop(1)

    # Finish and append until a crash in the middle of the third chunk: some partitions
    # hold it, the cursor does not (with one partition: the chunk is in, the cursor not).
    log = open_partitioned_log(deployment, pool_size=1)
    try:
        HistoryJobs(log.home.log_recorder.datastore).finish("shop", job_uuid(job))
        progress = AppendProgress(log.home.log_recorder.datastore)
        crashing = CrashingLog(log, after=deployment.partitions + 2 * deployment.partitions + 1)
        appender = HistoryAppender(
            crashing,  # type: ignore[arg-type]
            HistoryStaging(log.home.log_recorder.datastore),
            progress,
            IdentityLinks(log.home.log_recorder.datastore) if deployment.partitions > 1 else None,
            max_events=25,
        )
        with pytest.raises(Crash):
            _step_until_done(appender, progress, job_uuid(job))
        crashed = progress.load(job_uuid(job))
        assert crashed is not None and 0 < crashed.processed < len(history.times)
    finally:
        log.close()

    # A new ingest finds the job and finishes it.
    second = await start(deployment)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{second.port}") as ch:
            shop = HistoryClient(ch, "key-shop")
            done = await eventually(lambda: shop.done(job.job_id), "the resumed job")
    finally:
        await second.stop(1)
    assert done.appended_count == len(history.times)
    check_log(deployment, done, history)


def _step_until_done(
    appender: HistoryAppender, progress: AppendProgress, job_id: uuid.UUID
) -> None:
    for _ in range(1000):
        loaded = progress.load(job_id)
        assert loaded is not None
        if appender.step(loaded):
            return


async def test_another_apps_job_is_not_found(channel: grpc.aio.Channel) -> None:
    shop, news = HistoryClient(channel, "key-shop"), HistoryClient(channel, "key-news")
    job = await shop.start()
    calls = [
        lambda: news.get(job.job_id),
        lambda: news.finish(job.job_id),
        lambda: news.upload(job.job_id, [_event("x1")]),
        lambda: news.stub.CancelHistoryImport(
            history_pb2.CancelHistoryImportRequest(job_id=job.job_id), metadata=news.metadata
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await call()
        assert failure.value.code() == grpc.StatusCode.NOT_FOUND
    listed = await news.stub.ListHistoryImports(
        history_pb2.ListHistoryImportsRequest(), metadata=news.metadata
    )
    assert job.job_id not in [j.job_id for j in listed.jobs]
    assert (await shop.get(job.job_id)).state == STAGING
    # news may run its own job while shop's stages.
    assert (await news.start()).state == STAGING


def _event(event_id: str, **fields: Any) -> ingest_pb2.Event:
    fields.setdefault("user_id", "u1")
    fields.setdefault("name", "Opened")
    fields.setdefault("event_time", at(START))
    return ingest_pb2.Event(event_id=event_id, **fields)


async def _refused(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call
    return failure.value


async def test_bad_input_is_refused_naming_the_field_and_nothing_of_it_is_staged(
    channel: grpc.aio.Channel, deployment: Deployment
) -> None:
    shop = HistoryClient(channel, "key-shop")
    job = await shop.start(request_id="first-try")
    assert (await shop.start(request_id="first-try")).job_id == job.job_id

    conflict = await _refused(shop.start())
    assert conflict.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert job.job_id in (conflict.details() or "")

    bad_id = await _refused(shop.get("not-a-job"))
    assert bad_id.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in bad_request_of(bad_id)] == ["job_id"]
    empty = await _refused(shop.upload(job.job_id, []))
    assert [f for f, _ in bad_request_of(empty)] == ["events"]
    too_many = await _refused(shop.upload(job.job_id, [_event(f"m{i}") for i in range(1001)]))
    assert [f for f, _ in bad_request_of(too_many)] == ["events"]
    records = await _refused(shop.upload(job.job_id, [_event("r1")], event_records=[1, 2]))
    assert [f for f, _ in bad_request_of(records)] == ["event_records"]

    # Per item: a NUL, no time, an old event past the age limit, a bad record companion.
    reply = await shop.upload(
        job.job_id,
        [
            _event("ok-1"),
            _event("nul-1", name="Open\x00ed"),
            _event("no-time", event_time=None),
            _event("ancient", event_time=at(900_000_000_000_000)),
            _event("same-line"),
        ],
        [
            ingest_pb2.IdentifyRequest(
                event_id="bad-mail",
                user_id="u1",
                event_time=at(START),
                contact=ingest_pb2.Contact(email="nope"),
            )
        ],
        event_records=[1, 2, 3, 4, 5],
        identify_records=[5],
    )
    assert [r.status for r in reply.event_results] == [ACCEPTED] + [REJECTED] * 4
    assert [r.status for r in reply.identify_results] == [REJECTED]
    fields = [[v.field for v in r.violations] for r in reply.event_results[1:]]
    assert fields == [["name"], ["event_time"], ["event_time"], ["record"]]
    assert reply.identify_results[0].violations[0].field == "contact.email"
    assert reply.job.staged_count == 1 and reply.job.rejected_count == 5

    cancelled = await shop.stub.CancelHistoryImport(
        history_pb2.CancelHistoryImportRequest(job_id=job.job_id), metadata=shop.metadata
    )
    assert cancelled.job.state == history_pb2.HistoryImport.STATE_CANCELLED
    assert _staged_rows(deployment) == 0
    late = await _refused(shop.upload(job.job_id, [_event("late")]))
    assert late.code() == grpc.StatusCode.FAILED_PRECONDITION
    # Nothing of it reached the log.
    assert all(not entries for entries in partition_logs(deployment))


async def test_jobs_are_listed_newest_first_page_by_page(channel: grpc.aio.Channel) -> None:
    shop = HistoryClient(channel, "key-shop")
    made = []
    for _ in range(3):
        job = await shop.start()
        made.append(job.job_id)
        await shop.finish(job.job_id)  # nothing staged: done at once
    seen, token = [], ""
    while True:
        page = await shop.stub.ListHistoryImports(
            history_pb2.ListHistoryImportsRequest(page_size=2, page_token=token),
            metadata=shop.metadata,
        )
        seen += [j.job_id for j in page.jobs]
        token = page.next_page_token
        if not token:
            break
    assert seen == made[::-1]
    bad = await _refused(
        shop.stub.ListHistoryImports(
            history_pb2.ListHistoryImportsRequest(page_token="garbage"), metadata=shop.metadata
        )
    )
    assert [f for f, _ in bad_request_of(bad)] == ["page_token"]


async def test_live_ingest_is_unchanged_beside_history(channel: grpc.aio.Channel) -> None:
    live = IngestClient(channel, "key-shop")
    result = await live.track(_event(unique_id("live"), event_time=None))
    assert result.status == ACCEPTED


def test_an_event_stored_before_history_job_existed_decodes_with_its_default(
    database_url: str,
) -> None:
    log = open_event_log(database_url, pool_size=1)
    try:
        new = EventTracked(
            originator_id=uuid.uuid4(),
            originator_version=1,
            app_id="shop",
            event_id="old-1",
            user_id="u1",
            anonymous_id="",
            name="Opened",
            event_time_us=START,
            received_time_us=START,
        )
        stored = log.encode(new)
        state = orjson.loads(stored.state)
        del state["history_job"]  # as every event stored before the field was added
        old = stored.__class__(
            originator_id=stored.originator_id,
            originator_version=1,
            topic=stored.topic,
            state=orjson.dumps(state),
        )
        log.append_new([old])
        (note,) = log.recorder.select_notifications(start=None, limit=10)
        decoded = log.mapper.to_domain_event(note)
        assert isinstance(decoded, EventTracked)
        assert decoded.history_job == ""
        assert decoded == new
    finally:
        log.close()


def _staged_rows(deployment: Deployment) -> int:
    with psycopg.connect(deployment.home_url) as conn:
        row = conn.execute("SELECT count(*) FROM ingest_history_staging").fetchone()
    assert row is not None
    return int(row[0])


class BuggyLog(CrashingLog):
    """The log, with a bug that raises on the `after`-th append of user events."""

    def append(self, partition: int, stored: Any) -> Any:
        if any(
            not s.topic.endswith(("HistoryImportStarted", "HistoryImportFinished")) for s in stored
        ):
            self._left -= 1
            if self._left == 0:
                raise ValueError("a bug")
        return self._log.append(partition, stored)


async def test_a_job_that_fails_for_good_still_appends_its_finished_marker(
    deployment: Deployment,
) -> None:
    history = make_history(unique_id("f"), count=120, seed=3)
    app = await start(deployment)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as ch:
        shop = HistoryClient(ch, "key-shop")
        job = await shop.start()
        await upload_all(shop, job.job_id, history)
    await app.stop(1)

    log = open_partitioned_log(deployment, pool_size=2)
    home = log.home.log_recorder.datastore
    progress = AppendProgress(home)
    appender = HistoryAppender(
        BuggyLog(log, after=3),  # type: ignore[arg-type]
        HistoryStaging(home),
        progress,
        IdentityLinks(home) if deployment.partitions > 1 else None,
        max_events=25,
    )
    loop = HistoryLoop(appender, progress, JobLease(deployment.home_url), poll_s=0.05)
    try:
        loop.start()
        HistoryJobs(home).finish("shop", job_uuid(job))
        loop.kick()

        async def closed() -> Any:
            found = await asyncio.to_thread(progress.load, job_uuid(job))
            return found if found is not None and found.finished_positions else None

        failed = await eventually(closed, "the failed job closed")
    finally:
        await loop.stop()
        log.close()
    assert failed.state.value == "failed"
    assert "ValueError: a bug" in failed.failure_reason
    for partition, entries in enumerate(partition_logs(deployment)):
        part = history_of(entries, job.job_id)
        assert isinstance(part[-1].event, HistoryImportFinished)
        assert part[-1].event.events == failed.appended < len(history.times)
        assert failed.finished_positions[partition] == part[-1].position
