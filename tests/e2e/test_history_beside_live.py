"""One app imports its history while another goes on live (ingest and projector as
processes, on real PostgreSQL and NATS, through IngestService and HistoryImportService).

The importing app's job is held half-appended (the test holds its lease and appends
the first chunks with ingest's own appender): meanwhile the other app's live event is
folded, dated at its own time, and the recorded clock moves on for it; the importing
app's own live event waits (parked) and is folded after the history's Finished marker,
at its own position. Ordering and positions only, no timing."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest

from services.eventlog.partitioned import open_partitioned_log
from services.ingest.adapters.history_progress import AppendProgress, JobLease
from services.ingest.adapters.history_staging import HistoryStaging
from services.ingest.history_appender import HistoryAppender
from services.migrate import migrate
from tests.support.history import HistoryClient, at
from tests.support.infra import NatsForTests
from tests.support.ingest import ACCEPTED, IngestClient, event
from tests.support.pipeline import Pipeline
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e
DAY = 86_400_000_000
KEYS = {"COHORTFLOW_API_KEYS": "shop:key-shop,news:key-news"}


def _read(read: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
    """A database read as a check for `eventually` (off the event loop)."""

    async def check() -> Any:
        return await asyncio.to_thread(read)

    return check


def _rows(database_url: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(query, args).fetchall()


def _changes(database_url: str, app: str) -> list[tuple[Any, ...]]:
    return _rows(
        database_url,
        "SELECT user_id, kind, to_value, effective_us, position FROM projector_changes"
        " WHERE app_id = %s ORDER BY id",
        app,
    )


def _in_history_mode(database_url: str, app: str) -> bool:
    rows = _rows(
        database_url, "SELECT state ? 'history' FROM projector_apps WHERE app_id = %s", app
    )
    return bool(rows and rows[0][0])


def _clock(database_url: str) -> int:
    rows = _rows(database_url, "SELECT value FROM projector_meta WHERE name = 'now_us'")
    return int(rows[0][0]) if rows else 0


async def test_an_app_goes_on_live_while_another_imports_its_history(
    database_url: str, nats_server: NatsForTests, tmp_path: Path
) -> None:
    now = time.time_ns() // 1000
    rng = random.Random(3)
    history = [
        event(
            rng.choice(["App Opened", "Added to Cart"]),
            user_id=f"h{i % 8}",
            event_time=at(now - 40 * DAY + rng.randrange(0, 20 * DAY)),
        )
        for i in range(300)
    ]
    pipeline = Pipeline(
        database_url,
        nats_server.url,
        tmp_path,
        common=KEYS,
        ingest={"INGEST_MAX_BATCH_EVENTS": "25", "INGEST_HISTORY_POLL_S": "0.2"},
        projector={"PROJECTOR_TICK_INTERVAL_S": "1"},
    )
    lease = JobLease(database_url)
    deployment = migrate(database_url)
    log = open_partitioned_log(deployment, pool_size=1)
    try:
        pipeline.start()
        async with grpc.aio.insecure_channel(pipeline.ingest_address) as channel:
            shop = HistoryClient(channel, "key-shop")
            job = await shop.start()
            for part in (history[:150], history[150:]):
                await shop.upload(job.job_id, part)
            # Ingest cannot take the job while we hold its lease: we append part of it.
            assert lease.take(uuid.UUID(job.job_id))
            await shop.finish(job.job_id)
            progress = AppendProgress(log.home.log_recorder.datastore)
            appender = HistoryAppender(
                log, HistoryStaging(log.home.log_recorder.datastore), progress, None, max_events=25
            )
            for _ in range(4):  # the Started marker and three chunks
                loaded = progress.load(uuid.UUID(job.job_id))
                assert loaded is not None and not appender.step(loaded)
            half = await shop.get(job.job_id)
            (started,) = half.started_positions
            assert 0 < half.appended_count < len(history) and not half.finished_positions
            await eventually(
                _read(lambda: _in_history_mode(database_url, "shop")), "shop in history mode"
            )

            # Live: a news user, and a shop user, while the shop's history is half in.
            news_time, shop_time = now + 1, now + 2
            (news_live,) = await IngestClient(channel, "key-news").track_batch(
                [event("App Opened", user_id="n1", event_time=at(news_time))]
            )
            (shop_live,) = await IngestClient(channel, "key-shop").track_batch(
                [event("App Opened", user_id="s1", event_time=at(shop_time))]
            )
            assert news_live.status == shop_live.status == ACCEPTED
            assert started < news_live.position < shop_live.position
            news = await eventually(
                _read(lambda: _changes(database_url, "news")), "the news user's change"
            )
            assert news == [("n1", "lifecycle", "new", news_time, news_live.position)]
            # The recorded clock goes on for news (the ticker's ticks are folded) ...
            await eventually(_read(lambda: _clock(database_url) > news_time), "the clock moving")
            # ... while the shop's job is still appending, its live user parked.
            assert not (await shop.get(job.job_id)).finished_positions
            assert _in_history_mode(database_url, "shop")
            shop_changes = _changes(database_url, "shop")
            assert shop_changes and all(c[0] != "s1" for c in shop_changes)
            assert all(c[3] < now - 19 * DAY for c in shop_changes)  # by the app's own clock

            # Let ingest append the rest: then the shop's live user is folded, at its time.
            lease.release()
            done = await eventually(lambda: shop.done(job.job_id), "the job done")
            (finished,) = done.finished_positions
            assert shop_live.position < finished
            await eventually(
                _read(lambda: not _in_history_mode(database_url, "shop")), "history folded"
            )
            s1 = [c for c in _changes(database_url, "shop") if c[0] == "s1"]
            assert s1 == [("s1", "lifecycle", "new", shop_time, shop_live.position)]
    finally:
        lease.close()
        log.close()
        pipeline.stop()
        await pipeline.close()
