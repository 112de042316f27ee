"""The suite under simulator load, for fault tests: settings, campaigns, load, progress.

The projector ticks every second and folds the whole simulated history (late limit
400 days), so lifecycle, RFM and segment changes keep coming. Two campaigns act on
them: in-app on every lifecycle transition, a webhook on entering a segment (every
user, with their first App Opened). Campaign's ack wait and lease are short (2 s), so what a killed
process had fetched or leased comes back quickly.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from cohortflow.campaigns.v1 import campaigns_pb2 as pb
from cohortflow.changes.v1 import changes_pb2
from cohortflow.types.v1 import types_pb2

from services.cli.simulator import SimulationConfig, run_simulation
from services.cli.simulator.config import Summary
from services.projector.replay_check import Published, wait_settled
from tests.support.campaign import campaign, define
from tests.support.fault_checks import (
    Trigger,
    all_decided,
    campaign_problems,
    expected_triggers,
    recorded_changes,
    replay_comparison,
    stream_problems,
)
from tests.support.pipeline import Pipeline
from tests.support.receivers import HttpReceiver
from tests.support.simulated import simulated_ids, stored_id_counts
from tests.support.supervisor import SupervisedPipeline
from tests.support.triggers import entered_segment, segment_entered_trigger
from tests.support.waiting import eventually

POLICIES = json.dumps({"*": {"lifecycle": {"late_limit_days": 400}}})
PROJECTOR = {"PROJECTOR_TICK_INTERVAL_S": "1", "PROJECTOR_POLICIES": POLICIES}
CAMPAIGN = {"CAMPAIGN_FETCH_BATCH": "50", "CAMPAIGN_ACK_WAIT_S": "2", "CAMPAIGN_LEASE_S": "2"}
COMMON = {"LOG_LEVEL": "INFO"}
KEY = "key-shop"
STATES = [
    types_pb2.LIFECYCLE_STATE_NEW,
    types_pb2.LIFECYCLE_STATE_ACTIVE,
    types_pb2.LIFECYCLE_STATE_LOYAL,
    types_pb2.LIFECYCLE_STATE_DORMANT,
    types_pb2.LIFECYCLE_STATE_CHURNED,
    types_pb2.LIFECYCLE_STATE_REACTIVATED,
]


def faulty_pipeline(
    database_url: str, nats_url: str, workdir: Path, **common: str
) -> SupervisedPipeline:
    """The three services with the settings above (and `common` for all three)."""
    return SupervisedPipeline(
        database_url,
        nats_url,
        workdir,
        common={**COMMON, **common},
        projector=PROJECTOR,
        campaign=CAMPAIGN,
    )


def is_lifecycle(p: Published) -> bool:
    return isinstance(p.message, changes_pb2.LifecycleChanged)


async def define_campaigns(pipeline: Pipeline, webhook: HttpReceiver) -> dict[str, Trigger]:
    """A segment every user enters with their first App Opened (built and live), and
    both campaigns; campaign id -> which published changes trigger it."""
    entered = await segment_entered_trigger(pipeline)
    in_app, hook = await define(
        pipeline.campaign_address,
        campaign(
            name="on every transition",
            trigger=pb.Trigger(lifecycle=pb.LifecycleTrigger(to_states=STATES)),
        ),
        campaign(
            name="welcome hook",
            channel=types_pb2.CHANNEL_WEBHOOK,
            channel_settings=pb.ChannelSettings(webhook_url=f"{webhook.url}/hooks"),
            trigger=entered,
        ),
    )
    return {in_app: is_lifecycle, hook: entered_segment}  # type: ignore[dict-item]


@dataclass
class Load:
    """The simulator through ingest at a capped rate, in the background, until finished:
    one population after another (seed, seed + 1, ...), so the load lasts however long
    the faults take, and each population is sent whole."""

    address: str
    config: SimulationConfig
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    acked: int = 0
    runs: list[tuple[SimulationConfig, Summary]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    finishing: bool = False

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        def on_accepted(ids: list[str], at: float) -> None:
            self.acked += len(ids)

        seed = self.config.seed
        while not self.finishing:
            config = replace(self.config, seed=seed)
            summary = await run_simulation(
                config, self.address, KEY, now=self.now, on_accepted=on_accepted
            )
            self.runs.append((config, summary))
            seed += 1

    async def reach(self, events: int) -> None:
        """Until `events` were accepted; a failed simulation fails here."""

        async def reached() -> bool:
            if self.task is not None and self.task.done():
                self.task.result()  # raises what ended it
                raise AssertionError("the load ended before it was finished")
            return self.acked >= events

        await eventually(reached, f"{events} events accepted", within=180)

    async def finish(self) -> list[tuple[SimulationConfig, Summary]]:
        """Let the population being sent finish, start no other; every run."""
        assert self.task is not None
        self.finishing = True
        await asyncio.wait_for(self.task, timeout=300)
        return self.runs

    def ids(self) -> set[str]:
        """Every event id the finished runs sent."""
        return set().union(*(simulated_ids(config, self.now) for config, _ in self.runs))


async def resumed(probe: Callable[[], Awaitable[int]], what: str, within: float = 120.0) -> float:
    """Seconds until `probe()` grows past what it reads now: progress after a fault."""
    started = time.monotonic()
    before = await probe()

    async def grew() -> bool:
        return await probe() > before

    await eventually(grew, what, within=within)
    return time.monotonic() - started


def decided_count(database_url: str) -> Callable[[], Awaitable[int]]:
    """Probe: delivery decisions campaign has recorded."""

    def count() -> int:
        with psycopg.connect(database_url) as conn:
            row = conn.execute("SELECT count(*) FROM campaign_deliveries").fetchone()
        return int(row[0]) if row else 0

    return lambda: asyncio.to_thread(count)


async def stream_messages(nats_url: str | list[str], stream: str) -> int:
    """Messages the change stream holds now."""
    import nats

    nc = await nats.connect(nats_url, connect_timeout=2, max_reconnect_attempts=2)
    try:
        return int((await nc.jetstream(timeout=3).stream_info(stream)).state.messages)
    finally:
        await nc.close()


async def finish_and_verify(
    pipeline: SupervisedPipeline,
    load: Load,
    nats_url: str | list[str],
    triggers: dict[str, Trigger],
    webhook: HttpReceiver,
    *,
    repeated_calls_allowed: int = 0,
) -> dict[str, int]:
    """Let the load end and everything settle, stop the services one by one (ingest,
    then the projector, then campaign once it decided every trigger), and check that
    nothing was lost or doubled anywhere. Returns what was counted."""
    database_url = pipeline.database_url
    # Every call of the simulator was answered: none failed (it would have raised), none
    # was rejected; the log holds each simulated event exactly once.
    for _, summary in await load.finish():
        assert summary.rejected == 0, summary.rejections
        assert summary.accepted + summary.duplicate == summary.sent
    stored = await asyncio.to_thread(stored_id_counts, database_url)
    assert set(stored) == load.ids()
    assert set(stored.values()) == {1}
    await wait_settled(database_url, timeout_s=180)
    assert pipeline.stop_service("ingest") == 0, pipeline.output()
    assert pipeline.stop_service("projector") == 0, pipeline.output()

    recorded = await recorded_changes(nats_url, pipeline.streams)
    assert stream_problems(recorded) == []
    expected = expected_triggers(recorded, triggers)
    await eventually(
        lambda: asyncio.to_thread(all_decided, database_url, expected),
        "every trigger decided and sent",
        within=180,
    )
    assert pipeline.stop_service("campaign") == 0, pipeline.output()
    problems = await asyncio.to_thread(
        campaign_problems,
        database_url,
        expected,
        webhook,
        repeated_calls_allowed=repeated_calls_allowed,
    )
    assert problems == []
    comparison = await replay_comparison(database_url, recorded, POLICIES)
    assert comparison.identical, comparison.first_difference
    assert comparison.compared == len(recorded)
    return {
        "events": len(stored),
        "changes": len(recorded),
        "triggers": len(expected),
        "webhook calls repeated": sum(n - 1 for n in webhook.key_counts.values()),
    }
