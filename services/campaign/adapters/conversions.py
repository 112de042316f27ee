"""Conversions: follow the event log and mark exposures whose goal event followed.

The view is an eventsourcing tracking recorder: each batch of log events marks
its conversions and moves the tracked position in ONE transaction, so a
restart neither loses nor counts an event twice. A partitioned log is followed
partition by partition, each tracked under its partition's log name (with one
partition that is the log's own name, as before partitions).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence

import structlog
from eventsourcing.persistence import InfrastructureFactory, Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.utils import Environment, get_topic

from services.campaign.adapters.connections import store_env
from services.campaign.domain.conversions import Conversion, Exposure, Tracked, conversions
from services.campaign.domain.model import ConversionGoal
from services.campaign.schema import DELIVERIES
from services.eventlog.events import EventTracked
from services.eventlog.keyring import Keyring
from services.eventlog.partitioned import PartitionedLog
from services.eventlog.sealing import unseal_all

VIEW_NAME = "campaign_conversions"  # tracking table: campaign_conversions_tracking
_log = structlog.get_logger("campaign.conversions")

_CANDIDATES = f"""
SELECT d.send_id, d.campaign_id, k.app_id, k.user_id,
       (extract(epoch FROM coalesce(d.sent_at, d.due_at)) * 1000000)::bigint
FROM unnest(%s::text[], %s::text[]) AS k(app_id, user_id)
CROSS JOIN LATERAL (
    SELECT send_id, campaign_id, sent_at, due_at FROM {DELIVERIES} d
    WHERE d.app_id = k.app_id AND d.user_id = k.user_id AND d.campaign_id = ANY(%s::text[])
      AND d.status IN ('sent', 'control') AND d.converted_at IS NULL
    OFFSET 0  -- a probe per user, whatever the statistics (see deliveries.py)
) d
"""
_MARK = f"""
UPDATE {DELIVERIES} d
SET converted_at = to_timestamp(c.t / 1000000.0), conversion_event_id = c.e
FROM unnest(%s::text[], %s::bigint[], %s::text[]) AS c(s, t, e)
WHERE d.send_id = c.s AND d.converted_at IS NULL
"""


class ConversionRecorder(PostgresTrackingRecorder):
    def exposures(
        self, keys: Sequence[tuple[str, str]], campaign_ids: Sequence[str]
    ) -> list[Exposure]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            # Never prepared: planned for the log as it is now (see adapters/connections.py).
            curs.execute(
                _CANDIDATES,
                ([k[0] for k in keys], [k[1] for k in keys], list(campaign_ids)),
                prepare=False,
            )
            return [Exposure(*row.values()) for row in curs.fetchall()]

    def record(self, found: Sequence[Conversion], tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as curs:
            if found:
                curs.execute(
                    _MARK,
                    (
                        [c.send_id for c in found],
                        [c.time_us for c in found],
                        [c.event_id for c in found],
                    ),
                )
            self._insert_tracking(curs, tracking)


def open_conversion_recorder(
    database_url: str, *, create_table: bool = False, pool_size: int = 2
) -> ConversionRecorder:
    env = Environment(
        name=VIEW_NAME, env=store_env(database_url, create_table=create_table, pool_size=pool_size)
    )
    return InfrastructureFactory.construct(env).tracking_recorder(ConversionRecorder)  # type: ignore[return-value]


GoalsByApp = Callable[[], Mapping[str, Mapping[str, ConversionGoal]]]


class ConversionFollower:
    """Reads every partition's log after its tracked position, in batches, until stopped."""

    def __init__(
        self,
        log: PartitionedLog,
        recorder: ConversionRecorder,
        goals: GoalsByApp,
        *,
        batch: int = 500,
        poll_s: float = 0.5,
    ) -> None:
        self._log = log
        self._recorder = recorder
        self._goals = goals
        self._batch = batch
        self._poll_s = poll_s
        self._topics = [get_topic(EventTracked)]
        # Keys live in the home log's database (as ingest and the projector have them).
        self._keys = Keyring(log.home.log_recorder.datastore)

    def close(self) -> None:
        self._recorder.datastore.close()

    def step(self) -> int:
        """Process one batch of each partition; how many log events they covered (0: caught
        up; below `batch`: no partition had a full batch)."""
        return sum(self.step_partition(p) for p in range(self._log.partitions))

    def step_partition(self, partition: int) -> int:
        """Process one batch of `partition`; how many of its log events it covered."""
        name = self._log.deployment.log_name(partition)
        position = self._recorder.max_tracking_id(name) or 0
        notifications = self._log.recorder(partition).select_notifications(
            position, self._batch, topics=self._topics, inclusive_of_start=False
        )
        if not notifications:
            return 0
        goals = self._goals()
        wanted = {(app, g.event_name) for app, by_id in goals.items() for g in by_id.values()}
        tracked: list[Tracked] = []
        events = [self._log.mapper.to_domain_event(n) for n in notifications]
        goal_events = [
            e for e in events if isinstance(e, EventTracked) and (e.app_id, e.name) in wanted
        ]
        for event in unseal_all(goal_events, self._keys):
            if isinstance(event, EventTracked):
                tracked.append(
                    Tracked(
                        event.app_id,
                        event.user_id,
                        event.event_id,
                        event.name,
                        event.event_time_us,
                        event.properties,
                    )
                )
        found: list[Conversion] = []
        if tracked:
            keys = sorted({(t.app_id, t.user_id) for t in tracked})
            all_goals = {cid: g for by_id in goals.values() for cid, g in by_id.items()}
            exposures = self._recorder.exposures(keys, list(all_goals))
            found = conversions(exposures, tracked, all_goals)
        self._recorder.record(found, Tracking(name, notifications[-1].id))
        return len(notifications)

    def _step_each(self) -> int:
        """One batch of each partition; a partition whose batch fails keeps its position
        and does not hold the others back."""
        covered = 0
        for partition in range(self._log.partitions):
            try:
                covered += self.step_partition(partition)
            except Exception as error:  # keep following; its position did not move
                _log.warning("conversion batch failed", partition=partition, error=repr(error))
        return covered

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            covered = await asyncio.to_thread(self._step_each)
            if covered < self._batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._poll_s)
