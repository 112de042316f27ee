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
    def __init__(
        self,
        store: ProjectorStore,
        log: EventLog,
        committed_position: Callable[[], int],
        *,
        poll_s: float = 0.5,
        work_mem: str = WORK_MEM,
        statement_timeout_s: float = BUILD_STATEMENT_TIMEOUT_S,
    ) -> None:
        self._store = store
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
                f"SELECT v.app_id, v.segment_id, v.version, v.defined_position, v.definition"
                f" FROM {schema.SEGMENT_VERSIONS_TABLE} v"
                f" JOIN {schema.SEGMENTS_TABLE} s USING (app_id, segment_id)"
                f" LEFT JOIN {schema.SEGMENT_BUILD_PROGRESS_TABLE} p"
                "  ON p.app_id = v.app_id AND p.segment_id = v.segment_id"
                "  AND p.version = v.version"
                " WHERE v.status = 'building' AND s.latest_version = v.version"
                " AND s.state <> 'archived' AND (p.status IS NULL OR p.status = 'running')"
                " ORDER BY v.defined_position"
            )
            return list(curs.fetchall())

    def build_pending(self) -> int:
        built = 0
        for item in self.pending():
            if self._committed() < item["defined_position"]:
                continue  # facts up to the definition are not all committed yet
            self.build(
                item["app_id"],
                item["segment_id"],
                item["version"],
                item["defined_position"],
                item["definition"],
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
                " status, through_position, started_us, finished_us, error)"
                " VALUES (%s, %s, %s, 'failed', %s, %s, %s, %s)"
                " ON CONFLICT (app_id, segment_id, version) DO UPDATE SET status = 'failed',"
                " finished_us = EXCLUDED.finished_us, error = EXCLUDED.error",
                (app_id, segment_id, version, position, now, now, reason),
            )
        _log.warning(
            "segment build failed",
            app_id=app_id,
            segment_id=segment_id,
            version=version,
            reason=reason,
        )

    def _build(
        self, app_id: str, segment_id: str, version: int, position: int, definition: dict
    ) -> None:
        started = time.perf_counter()
        compiled = compile_segment(segment_id, version, parse(definition))
        specs = [compiled.trackers[k] for k in sorted(compiled.trackers)]
        names = sorted({name for spec in specs for name in spec.names})
        with (
            self._store.datastore.transaction(commit=True) as curs,
            guarded(curs, self._timeout_s),
        ):
            curs.execute(
                f"SELECT count(*) AS n FROM {schema.FACTS_TABLE}"
                " WHERE app_id = %s AND name = ANY(%s) AND position <= %s",
                (app_id, names, position),
            )
            row = curs.fetchone()
            total = int(row["n"]) if row else 0
            curs.execute(
                f"INSERT INTO {schema.SEGMENT_BUILD_PROGRESS_TABLE} (app_id, segment_id, version,"
                " status, events_total, through_position, started_us)"
                " VALUES (%s, %s, %s, 'running', %s, %s, %s)"
                " ON CONFLICT (app_id, segment_id, version) DO UPDATE SET status = 'running',"
                " events_done = 0, events_total = EXCLUDED.events_total,"
                " started_us = EXCLUDED.started_us",
                (app_id, segment_id, version, total, position, _now_us()),
            )

        def progress(done: int, of: int) -> None:
            with self._store.cursor() as curs:
                curs.execute(
                    f"UPDATE {schema.SEGMENT_BUILD_PROGRESS_TABLE} SET events_done = %s"
                    " WHERE app_id = %s AND segment_id = %s AND version = %s",
                    (total * done // max(of, 1), app_id, segment_id, version),
                )

        with (
            self._store.datastore.transaction(commit=True) as curs,
            guarded(curs, self._timeout_s),
        ):
            tune(curs, self._work_mem)
            curs.execute(
                f"DELETE FROM {schema.SEGMENT_BUILDS_TABLE}"
                " WHERE app_id = %s AND segment_id = %s AND version = %s",
                (app_id, segment_id, version),
            )
            users = _store_states(curs, app_id, segment_id, version, specs, position, progress)
            curs.execute(
                f"UPDATE {schema.SEGMENT_BUILD_PROGRESS_TABLE} SET status = 'stored',"
                " events_done = events_total, users = %s, finished_us = %s"
                " WHERE app_id = %s AND segment_id = %s AND version = %s",
                (users, _now_us(), app_id, segment_id, version),
            )
        self._append_built(app_id, segment_id, version, position, users)
        _log.info(
            "segment version built",
            app_id=app_id,
            segment_id=segment_id,
            version=version,
            users=users,
            events=total,
            seconds=round(time.perf_counter() - started, 3),
        )

    def _append_built(
        self, app_id: str, segment_id: str, version: int, position: int, users: int
    ) -> None:
        for _ in range(10):
            segment: Segment = self._log.repository.get(segment_uuid(app_id, segment_id))
            if segment.archived or segment.definition_version != version:
                return  # superseded meanwhile: the newer version gets its own build
            segment.built(version, position, users)
            try:
                self._log.save(segment)
                return
            except IntegrityError:
                continue  # someone appended to the segment at the same time; reload
        msg = f"could not record the build of {segment_id} v{version}"
        raise RuntimeError(msg)


def _store_states(
    curs: Any,
    app_id: str,
    segment_id: str,
    version: int,
    specs: list[tr.TrackerSpec],
    position: int,
    progress: Callable[[int, int], None],
) -> int:
    """Writes compute_states' rows straight into segment_builds, server-side; the user count.

    Each user's row is {tracker key: state} as compute_states gives it (one query per
    tracker, a later tracker's state merged into the row of an earlier one), built in
    SQL so no state travels through Python. Returns how many users have a row.
    """
    curs.execute(clock_query(position))
    row = curs.fetchone()
    now_us = int(row["now_us"]) if row else 0
    table = sql.Identifier(schema.SEGMENT_BUILDS_TABLE)
    inserted = 0
    for index, spec in enumerate(specs):
        merge = (
            sql.SQL(
                " ON CONFLICT (app_id, segment_id, version, user_id)"
                " DO UPDATE SET states = {table}.states || EXCLUDED.states"
            ).format(table=table)
            if index
            else sql.SQL("")
        )
        curs.execute(
            sql.SQL(
                "INSERT INTO {table} (app_id, segment_id, version, user_id, states)"
                " SELECT {app}, {segment}, {version}, user_id, states FROM ({rows}) AS r{merge}"
            ).format(
                table=table,
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
        " WHERE app_id = %s AND segment_id = %s AND version = %s",
        (app_id, segment_id, version),
    )
    row = curs.fetchone()
    return int(row["n"]) if row else 0
