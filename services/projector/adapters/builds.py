"""Building segment versions from history, in the background.

The builder finds versions waiting to be built, waits until the projector has
committed their definition's position (so the facts up to it are there),
computes every tracker's state as of that position set-based in SQL, stores the
rows and appends Segment.Built to the log. When the projector reaches that
event it merges the stored states with what it tracked live since the
definition and switches the version on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import structlog
from eventsourcing.persistence import IntegrityError
from psycopg import sql

from services.common.segments.definition import parse
from services.eventlog.partition_events import SegmentPartitionBuilt, mail_uuid
from services.eventlog.partitioned import PartitionedLog
from services.eventlog.partitions import partition_floor
from services.eventlog.segments import Segment, segment_uuid
from services.eventlog.store import EventLog
from services.projector import schema
from services.projector.adapters.history import WORK_MEM, clock_query, keyed_states_query, tune
from services.projector.adapters.query_guard import (
    BUILD_STATEMENT_TIMEOUT_S,
    QueryTimeout,
    QueryTooExpensive,
    guarded,
)
from services.projector.adapters.store import ProjectorStore
from services.projector.domain.segments import trackers as tr
from services.projector.domain.segments.compile import compile_segment

_log = structlog.get_logger("projector.builds")


def _now_us() -> int:
    return time.time_ns() // 1000


class SegmentBuilder:
    """Builds the versions its partition's fold queued (see the segments writer): each
    over the partition's own facts up to the definition's position in the partition."""

    def __init__(
        self,
        store: ProjectorStore,
        log: EventLog | PartitionedLog,
        committed_position: Callable[[], int],
        *,
        poll_s: float = 0.5,
        work_mem: str = WORK_MEM,
        statement_timeout_s: float = BUILD_STATEMENT_TIMEOUT_S,
    ) -> None:
        self._store = store
        self._scope = store.scope
        self._log = log
        self._committed = committed_position
        self._poll_s = poll_s
        self._work_mem = work_mem
        self._timeout_s = statement_timeout_s

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self._poll_s):
            try:
                self.build_pending()
            except Exception as error:  # the database may be away: try again next round
                _log.warning("segment builds failed", error=repr(error))

    def pending(self) -> list[dict[str, Any]]:
        with self._store.cursor() as curs:
            curs.execute(
                "SELECT app_id, segment_id, version, through_position, definition"
                f" FROM {schema.SEGMENT_BUILD_PROGRESS_TABLE}"
                " WHERE partition = %s AND status IN ('waiting', 'running')"
                " AND definition IS NOT NULL ORDER BY through_position",
                (self._scope.partition,),
            )
            return list(curs.fetchall())

    def build_pending(self) -> int:
        built = 0
        for item in self.pending():
            through = item["through_position"]
            if self._committed() < self._scope.notification_id(through):
                continue  # facts up to the definition are not all committed yet
            self.build(
                item["app_id"], item["segment_id"], item["version"], through, item["definition"]
            )
            built += 1
        return built

    def build(
        self, app_id: str, segment_id: str, version: int, position: int, definition: dict
    ) -> None:
        """Build one version; one that is beyond the limits is marked failed, not retried.

        A statement past PROJECTOR_BUILD_STATEMENT_TIMEOUT_S, or one PostgreSQL refuses for
        its resources, fails the build for good (its reason in the build progress): the
        same definition over the same history would fail again. Any other error (the
        database away) is raised, and the next round tries again.
        """
        try:
            self._build(app_id, segment_id, version, position, definition)
        except QueryTimeout as error:
            self._failed(
                app_id,
                segment_id,
                version,
                position,
                f"a query of the build ran longer than {error.timeout_s:g} s"
                " (PROJECTOR_BUILD_STATEMENT_TIMEOUT_S); make the definition cheaper"
                " (fewer or narrower event conditions, shorter windows) and update it",
            )
        except QueryTooExpensive as error:
            self._failed(
                app_id, segment_id, version, position, f"PostgreSQL refused the build: {error}"
            )

    def _failed(
        self, app_id: str, segment_id: str, version: int, position: int, reason: str
    ) -> None:
        now = _now_us()
        with self._store.cursor() as curs:
            curs.execute(
                f"INSERT INTO {schema.SEGMENT_BUILD_PROGRESS_TABLE} (app_id, segment_id, version,"
                " status, through_position, started_us, finished_us, error, partition)"
                " VALUES (%s, %s, %s, 'failed', %s, %s, %s, %s, %s)"
                " ON CONFLICT (partition, app_id, segment_id, version) DO UPDATE"
                " SET status = 'failed', finished_us = EXCLUDED.finished_us,"
                " error = EXCLUDED.error",
                (app_id, segment_id, version, position, now, now, reason, self._scope.partition),
            )
        _log.warning(
            "segment build failed",
            app_id=app_id,
            segment_id=segment_id,
            version=version,
            partition=self._scope.partition,
            reason=reason,
        )

    def _build(
        self, app_id: str, segment_id: str, version: int, position: int, definition: dict
    ) -> None:
        started = time.perf_counter()
        partition = self._scope.partition
        key = (app_id, segment_id, version, partition)
        compiled = compile_segment(segment_id, version, parse(definition))
        specs = [compiled.trackers[k] for k in sorted(compiled.trackers)]
        names = sorted({name for spec in specs for name in spec.names})
        with (
            self._store.datastore.transaction(commit=True) as curs,
            guarded(curs, self._timeout_s),
        ):
            curs.execute(
                f"SELECT count(*) AS n FROM {schema.FACTS_TABLE}"
                " WHERE app_id = %s AND name = ANY(%s) AND position BETWEEN %s AND %s",
                (app_id, names, partition_floor(position), position),
            )
            row = curs.fetchone()
            total = int(row["n"]) if row else 0
            curs.execute(
                f"INSERT INTO {schema.SEGMENT_BUILD_PROGRESS_TABLE} (app_id, segment_id, version,"
                " partition, status, events_total, through_position, started_us)"
                " VALUES (%s, %s, %s, %s, 'running', %s, %s, %s)"
                " ON CONFLICT (partition, app_id, segment_id, version) DO UPDATE"
                " SET status = 'running', events_done = 0, events_total = EXCLUDED.events_total,"
                " started_us = EXCLUDED.started_us",
                (*key, total, position, _now_us()),
            )

        def progress(done: int, of: int) -> None:
            with self._store.cursor() as curs:
                curs.execute(
                    f"UPDATE {schema.SEGMENT_BUILD_PROGRESS_TABLE} SET events_done = %s"
                    " WHERE app_id = %s AND segment_id = %s AND version = %s AND partition = %s",
                    (total * done // max(of, 1), *key),
                )

        with (
            self._store.datastore.transaction(commit=True) as curs,
            guarded(curs, self._timeout_s),
        ):
            tune(curs, self._work_mem)
            curs.execute(
                f"DELETE FROM {schema.SEGMENT_BUILDS_TABLE}"
                " WHERE app_id = %s AND segment_id = %s AND version = %s AND partition = %s",
                key,
            )
            users = _store_states(curs, key, specs, position, progress)
            curs.execute(
                f"UPDATE {schema.SEGMENT_BUILD_PROGRESS_TABLE} SET status = 'stored',"
                " events_done = events_total, users = %s, finished_us = %s"
                " WHERE app_id = %s AND segment_id = %s AND version = %s AND partition = %s",
                (users, _now_us(), *key),
            )
        if self._scope.single:
            self._append_built(app_id, segment_id, version, position, users)
        else:
            self._append_partition_built(app_id, segment_id, version, position, users)
        _log.info(
            "segment version built",
            app_id=app_id,
            segment_id=segment_id,
            version=version,
            partition=partition,
            users=users,
            events=total,
            seconds=round(time.perf_counter() - started, 3),
        )

    def _append_built(
        self, app_id: str, segment_id: str, version: int, position: int, users: int
    ) -> None:
        log = self._log if isinstance(self._log, EventLog) else self._log.home
        for _ in range(10):
            segment: Segment = log.repository.get(segment_uuid(app_id, segment_id))
            if segment.archived or segment.definition_version != version:
                return  # superseded meanwhile: the newer version gets its own build
            segment.built(version, position, users)
            try:
                log.save(segment)
                return
            except IntegrityError:
                continue  # someone appended to the segment at the same time; reload
        msg = f"could not record the build of {segment_id} v{version}"
        raise RuntimeError(msg)

    def _append_partition_built(
        self, app_id: str, segment_id: str, version: int, position: int, users: int
    ) -> None:
        """A partition's build is an event of its own log (its fold switches on it)."""
        assert isinstance(self._log, PartitionedLog)
        partition = self._scope.partition
        built = SegmentPartitionBuilt(
            originator_id=mail_uuid("built", app_id, segment_id, version, partition),
            originator_version=1,
            app_id=app_id,
            segment_id=segment_id,
            definition_version=version,
            through_position=position,
            users=users,
        )
        self._log.append(partition, [self._log.encode(built)])


def _store_states(
    curs: Any,
    key: tuple[str, str, int, int],
    specs: list[tr.TrackerSpec],
    position: int,
    progress: Callable[[int, int], None],
) -> int:
    """Writes compute_states' rows straight into segment_builds, server-side; the user count.

    Each user's row is {tracker key: state} as compute_states gives it (one query per
    tracker, a later tracker's state merged into the row of an earlier one), built in
    SQL so no state travels through Python. Returns how many users have a row.
    """
    app_id, segment_id, version, partition = key
    curs.execute(clock_query(position))
    row = curs.fetchone()
    now_us = int(row["now_us"]) if row else 0
    table = sql.Identifier(schema.SEGMENT_BUILDS_TABLE)
    inserted = 0
    for index, spec in enumerate(specs):
        merge = (
            sql.SQL(
                " ON CONFLICT (partition, app_id, segment_id, version, user_id)"
                " DO UPDATE SET states = {table}.states || EXCLUDED.states"
            ).format(table=table)
            if index
            else sql.SQL("")
        )
        curs.execute(
            sql.SQL(
                "INSERT INTO {table} (app_id, segment_id, version, partition, user_id, states)"
                " SELECT {app}, {segment}, {version}, {partition}, user_id, states"
                " FROM ({rows}) AS r{merge}"
            ).format(
                table=table,
                partition=sql.Literal(partition),
                app=sql.Literal(app_id),
                segment=sql.Literal(segment_id),
                version=sql.Literal(version),
                rows=keyed_states_query(app_id, spec, position, now_us),
                merge=merge,
            )
        )
        inserted += curs.rowcount
        progress(index + 1, len(specs))
    if len(specs) <= 1:
        return inserted
    curs.execute(
        f"SELECT count(*) AS n FROM {schema.SEGMENT_BUILDS_TABLE}"
        " WHERE app_id = %s AND segment_id = %s AND version = %s AND partition = %s",
        key,
    )
    row = curs.fetchone()
    return int(row["n"]) if row else 0
