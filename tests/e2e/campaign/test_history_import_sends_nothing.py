"""Issue 14.4 end to end: 90 days of simulated history imported with `cohortflow import
--history` while the demo's campaigns are applied send nothing (every transition of the
history is skipped, recorded as `imported_history`, though the demo's campaigns accept
changes up to 31 days old); a transition a fresh live event causes after the import does
send. ingest, projector and campaign as processes on real PostgreSQL and NATS."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections import Counter
from pathlib import Path

import grpc
import psycopg
import pytest
from cohortflow.campaigns.v1 import campaigns_pb2 as pb
from cohortflow.campaigns.v1 import campaigns_pb2_grpc

from services.cli.client import Connection, Target
from services.cli.demo.apply import apply_campaigns
from services.cli.demo.files import load
from services.cli.segment_apply import apply_segments
from services.eventlog.store import open_event_log
from tests.support.campaign import auth
from tests.support.cli import COMMAND
from tests.support.history import at
from tests.support.history_file import write_simulated_history
from tests.support.infra import NatsForTests
from tests.support.ingest import ACCEPTED, IngestClient, event
from tests.support.logevents import HOUR, tick
from tests.support.pipeline import Pipeline
from tests.support.processes import REPO
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e
SHOP = auth("key-shop")
FRESH = [f"fresh-{n}" for n in range(6)]
DONE = {pb.Delivery.STATUS_SENT, pb.Delivery.STATUS_PENDING, pb.Delivery.STATUS_CONTROL}


async def _deliveries(
    campaigns: campaigns_pb2_grpc.CampaignServiceStub, campaign_id: str, user_id: str = ""
) -> list[pb.Delivery]:
    out: list[pb.Delivery] = []
    token = ""
    while True:
        page = await campaigns.ListDeliveries(
            pb.ListDeliveriesRequest(
                campaign_id=campaign_id, user_id=user_id, page_size=500, page_token=token
            ),
            metadata=SHOP,
        )
        out += page.deliveries
        token = page.next_page_token
        if not token:
            return out


def _history_changes(database_url: str) -> tuple[int, dict[str, int]]:
    """The position of the import's Finished marker, and each change's position."""
    log = open_event_log(database_url, pool_size=1)
    try:
        notes = log.recorder.select_notifications(start=None, limit=1_000_000)
        (finished,) = [n.id for n in notes if n.topic.endswith("HistoryImportFinished")]
    finally:
        log.close()
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT change_id, position FROM projector_changes").fetchall()
    return finished, dict(rows)


async def test_an_imported_history_sends_nothing_and_a_fresh_transition_sends(
    database_url: str, nats_server: NatsForTests, tmp_path: Path
) -> None:
    pipeline = Pipeline(
        database_url, nats_server.url, tmp_path, projector={"PROJECTOR_TICK_INTERVAL_S": "1"}
    )
    try:
        pipeline.start()
        target = Target(
            ingest=pipeline.ingest_address,
            projector=pipeline.projector_address,
            campaign=pipeline.campaign_address,
            key="key-shop",
        )
        files = load(REPO / "deploy" / "demo")
        async with Connection(target, "projector") as projector:
            await apply_segments(projector, files.segments)
        async with Connection(target, "campaign") as campaign_conn:
            applied = await apply_campaigns(campaign_conn, files.campaigns)
        ids = {a.name: a.ident for a in applied}
        assert set(ids) >= {"cart-reminder", "win-back", "champion-thanks"}

        path = tmp_path / "history.jsonl"
        lines = write_simulated_history(path, users=60, days=90, seed=14)
        imported = await asyncio.to_thread(
            subprocess.run,
            [*COMMAND, "import", "--history", str(path)],
            env={
                **os.environ,
                "COHORTFLOW_INGEST": pipeline.ingest_address,
                "COHORTFLOW_PROJECTOR": pipeline.projector_address,
                "COHORTFLOW_API_KEY": "key-shop",
            },
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert imported.returncode == 0, imported.stdout + imported.stderr
        assert f"{lines:,} events appended to the log, folded by the projector" in (imported.stdout)

        # After the import: fresh users fill a cart now and leave it; a day later by the
        # recorded clock (a tick as the ticker would append it then) they enter
        # cart-abandoners, the trigger of the demo's cart reminder.
        now = time.time_ns() // 1000
        async with grpc.aio.insecure_channel(pipeline.ingest_address) as channel:
            results = await IngestClient(channel, "key-shop").track_batch(
                [event("Added to Cart", user_id=user, event_time=at(now)) for user in FRESH]
            )
        assert {r.status for r in results} == {ACCEPTED}
        log = open_event_log(database_url, pool_size=1)
        try:
            log.append_new([log.encode(tick(now + 25 * HOUR))])
        finally:
            log.close()

        async with grpc.aio.insecure_channel(pipeline.campaign_address) as channel:
            campaigns = campaigns_pb2_grpc.CampaignServiceStub(channel)

            async def fresh_decided() -> list[pb.Delivery] | None:
                found = [
                    d
                    for user in FRESH
                    for d in await _deliveries(campaigns, ids["cart-reminder"], user)
                ]
                return found if len({d.user_id for d in found}) == len(FRESH) else None

            fresh = await eventually(fresh_decided, "the fresh users' cart reminders")
            assert {d.status for d in fresh} <= DONE, fresh
            assert sum(d.status != pb.Delivery.STATUS_CONTROL for d in fresh) >= 1

            # The history's transitions (folded up to its Finished marker, and decided
            # before the fresh ones: they came first on the stream) sent nothing, each skip
            # recorded with its reason. (Imported users whose next transition came later,
            # by the clock after the import, are live transitions like the fresh ones.)
            finished, positions = await asyncio.to_thread(_history_changes, database_url)
            reasons: Counter[tuple[str, str]] = Counter()
            for key in ("cart-reminder", "win-back", "champion-thanks"):
                for d in await _deliveries(campaigns, ids[key]):
                    if positions[d.change_id] > finished:
                        continue
                    assert d.status == pb.Delivery.STATUS_SUPPRESSED, (key, d)
                    reasons[key, d.reason] += 1
            assert {reason for _, reason in reasons} == {"imported_history"}, reasons
            assert reasons["win-back", "imported_history"] > 0, reasons
            assert reasons["cart-reminder", "imported_history"] > 0, reasons
            stats = await campaigns.GetCampaignStats(
                pb.GetCampaignStatsRequest(campaign_id=ids["win-back"]), metadata=SHOP
            )
            suppressed = sum(g.suppressed["imported_history"] for g in stats.groups)
            assert suppressed == reasons["win-back", "imported_history"]
    finally:
        pipeline.stop()
        await pipeline.close()
