"""Reads behind SegmentService: definitions, members, memberships, the change feed."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg
from eventsourcing.persistence import OperationalError

from services.common.segments.definition import Definition
from services.eventlog.store import LOG_NAME
from services.projector import rollup_schema as rs
from services.projector import schema
from services.projector.adapters.history import WORK_MEM, tune
from services.projector.adapters.preview import preview_query
from services.projector.adapters.query_guard import QUERY_TIMEOUT_S, QueryHandle, guarded
from services.projector.adapters.rollups import DAY_US
from services.projector.adapters.store import ProjectorStore

# The members of segment s now, without counting them: the daily rollups' entries minus
# exits of every day, as far as they are folded (%(folded)s, their last change row),
# plus those of the changes committed since. A user's entries and exits of a segment
# alternate (the projector records every one, silent ones too), so the sums are the
# number of users whose last change is an entry: the rows of segment_members.
_SIZE = (
    f"((SELECT coalesce(sum(d.delta), 0) FROM {rs.SEGMENT_DAILY_TABLE} d"
    "   WHERE d.app_id = s.app_id AND d.segment_id = s.segment_id)"
    " + (SELECT coalesce(sum(CASE WHEN c.to_value = 'entered' THEN 1 ELSE -1 END), 0)"
    f"   FROM {schema.CHANGES_TABLE} c WHERE c.id > %(folded)s AND c.app_id = s.app_id"
    "   AND c.kind = 'membership' AND c.details->>'segment_id' = s.segment_id))::bigint"
)
# The same by counting them, when the change table cannot be read at once (locked by a
# rebuild being swapped in, say): nothing waits on it then.
_COUNTED = (
    f"(SELECT count(*) FROM {schema.SEGMENT_MEMBERS_TABLE} m"
    " WHERE m.app_id = s.app_id AND m.segment_id = s.segment_id)"
)
_LOCK_WAIT = "200ms"


def _folded_up_to(curs: Any) -> int:
    """The last change row the rollups have folded (0: none yet)."""
    curs.execute(f"SELECT last_id FROM {rs.POSITION_TABLE} WHERE name = %s", (rs.FOLD_NAME,))
    row = curs.fetchone()
    return int(row["last_id"]) if row else 0


def _lock_not_available(error: BaseException) -> bool:
    cause = error.__cause__
    return isinstance(cause, psycopg.errors.LockNotAvailable)


class SegmentQueries:
    def __init__(self, store: ProjectorStore) -> None:
        self._store = store

    def _sized(self, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Rows of `query` with its {size} filled in: from the rollups, or by counting
        if the change table is locked."""
        try:
            with self._store.datastore.transaction(commit=False) as curs:
                curs.execute("SELECT set_config('lock_timeout', %s, true)", (_LOCK_WAIT,))
                folded = _folded_up_to(curs)
                curs.execute(query.format(size=_SIZE), {**params, "folded": folded})
                return list(curs.fetchall())
        except OperationalError as error:
            if not _lock_not_available(error):
                raise
        with self._store.cursor() as curs:
            curs.execute(query.format(size=_COUNTED), params)
            return list(curs.fetchall())

    def segment(self, app_id: str, segment_id: str) -> dict[str, Any] | None:
        rows = self._sized(
            f"SELECT s.*, {{size}} AS size FROM {schema.SEGMENTS_TABLE} s"
            " WHERE app_id = %(app)s AND segment_id = %(segment)s",
            {"app": app_id, "segment": segment_id},
        )
        return rows[0] if rows else None

    def version(self, app_id: str, segment_id: str, version: int) -> dict[str, Any] | None:
        with self._store.cursor() as curs:
            curs.execute(
                f"SELECT * FROM {schema.SEGMENT_VERSIONS_TABLE}"
                " WHERE app_id = %s AND segment_id = %s AND version = %s",
                (app_id, segment_id, version),
            )
            return curs.fetchone()

    def build_progress(self, app_id: str, segment_id: str, version: int) -> dict[str, Any] | None:
        """The build of a version, over every partition's share of it (None: not begun)."""
        with self._store.cursor() as curs:
            curs.execute(
                f"SELECT * FROM {schema.SEGMENT_BUILD_PROGRESS_TABLE}"
                " WHERE app_id = %s AND segment_id = %s AND version = %s"
                " AND status IN ('running', 'stored', 'failed')",
                (app_id, segment_id, version),
            )
            return combined_build(curs.fetchall())

    def segments(
        self, app_id: str, after: str, limit: int, show_archived: bool
    ) -> list[dict[str, Any]]:
        return self._sized(
            f"SELECT s.*, {{size}} AS size FROM {schema.SEGMENTS_TABLE} s"
            " WHERE app_id = %(app)s AND segment_id > %(after)s"
            " AND (%(archived)s OR state <> 'archived') ORDER BY segment_id LIMIT %(limit)s",
            {"app": app_id, "after": after, "archived": show_archived, "limit": limit},
        )

    def latest_definitions(self, app_id: str) -> dict[str, dict[str, Any]]:
        """segment_id -> latest definition, of the app's segments not archived."""
        with self._store.cursor() as curs:
            curs.execute(
                f"SELECT v.segment_id, v.definition FROM {schema.SEGMENT_VERSIONS_TABLE} v"
                f" JOIN {schema.SEGMENTS_TABLE} s ON s.app_id = v.app_id"
                "  AND s.segment_id = v.segment_id AND s.latest_version = v.version"
                " WHERE v.app_id = %s AND s.state <> 'archived'",
                (app_id,),
            )
            return {row["segment_id"]: row["definition"] for row in curs.fetchall()}

    def members(
        self, app_id: str, segment_id: str, after: str, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        with self._store.cursor() as curs:
            curs.execute(
                f"SELECT user_id, since_us FROM {schema.SEGMENT_MEMBERS_TABLE}"
                " WHERE app_id = %s AND segment_id = %s AND user_id > %s"
                " ORDER BY user_id LIMIT %s",
                (app_id, segment_id, after, limit),
            )
            rows = list(curs.fetchall())
        total = self._sized(
            f"SELECT {{size}} AS n FROM {schema.SEGMENTS_TABLE} s"
            " WHERE app_id = %(app)s AND segment_id = %(segment)s",
            {"app": app_id, "segment": segment_id},
        )
        return rows, int(total[0]["n"]) if total else 0

    def membership(self, app_id: str, segment_id: str, user_id: str) -> dict[str, Any] | None:
        with self._store.cursor() as curs:
            curs.execute(
                f"SELECT version, since_us FROM {schema.SEGMENT_MEMBERS_TABLE}"
                " WHERE app_id = %s AND segment_id = %s AND user_id = %s",
                (app_id, segment_id, user_id),
            )
            return curs.fetchone()

    def user_segments(self, app_id: str, user_id: str) -> list[dict[str, Any]]:
        with self._store.cursor() as curs:
            curs.execute(
                f"SELECT segment_id, version, since_us FROM {schema.SEGMENT_MEMBERS_TABLE}"
                " WHERE app_id = %s AND user_id = %s ORDER BY segment_id",
                (app_id, user_id),
            )
            return list(curs.fetchall())

    def membership_changes(
        self, app_id: str, segment_id: str, after_id: int, after_position: int, limit: int
    ) -> list[dict[str, Any]]:
        with self._store.cursor() as curs:
            curs.execute(
                f"SELECT * FROM {schema.CHANGES_TABLE}"
                " WHERE app_id = %s AND kind = 'membership' AND id > %s AND position > %s"
                " AND (%s = '' OR details->>'segment_id' = %s)"
                " AND coalesce((details->>'published')::boolean, true)"
                " ORDER BY id LIMIT %s",
                (app_id, after_id, after_position, segment_id, segment_id, limit),
            )
            return list(curs.fetchall())


def _rolled_up_size(curs: Any, app_id: str, segment_id: str, as_of_us: int) -> int | None:
    """Members at the end of a UTC day (`as_of_us` its last microsecond) from the daily
    rollups: entries minus exits dated up to that day as far as they are folded, plus
    those of the changes committed since. A user's changes of one segment never go back
    in time, so these sums count whose latest change up to then is an entry. None for
    other times (counted from the changes themselves)."""
    if (as_of_us + 1) % DAY_US:
        return None
    curs.execute(f"SELECT last_id FROM {rs.POSITION_TABLE} WHERE name = %s", (rs.FOLD_NAME,))
    at = curs.fetchone()
    if at is None:
        return None
    curs.execute(
        f"SELECT coalesce(sum(delta), 0) AS n FROM {rs.SEGMENT_DAILY_TABLE}"
        " WHERE app_id = %s AND segment_id = %s AND day <= %s",
        (app_id, segment_id, (as_of_us + 1) // DAY_US - 1),
    )
    folded = curs.fetchone()
    curs.execute(
        "SELECT coalesce(sum(CASE WHEN to_value = 'entered' THEN 1 ELSE -1 END), 0) AS n"
        f" FROM {schema.CHANGES_TABLE} WHERE id > %s AND app_id = %s AND kind = 'membership'"
        " AND details->>'segment_id' = %s AND effective_us <= %s",
        (at["last_id"], app_id, segment_id, as_of_us),
    )
    since = curs.fetchone()
    return int(folded["n"] if folded else 0) + int(since["n"] if since else 0)


class HistoryQueries:
    """Previews and time travel: set-based over the facts and the change timeline.

    Every query runs in a read-only transaction within `query_guard`'s limits: at most
    `timeout_s` (or the `timeout_s` a call passes, e.g. what is left of its deadline), and
    cancellable through the `handle` a call passes.
    """

    def __init__(
        self, store: ProjectorStore, work_mem: str = WORK_MEM, timeout_s: float = QUERY_TIMEOUT_S
    ) -> None:
        self._store = store
        self._work_mem = work_mem
        self.timeout_s = timeout_s

    @contextlib.contextmanager
    def _reading(
        self,
        timeout_s: float | None,
        handle: QueryHandle | None,
        *,
        snapshot: bool = False,
        tuned: bool = False,
    ) -> Iterator[Any]:
        limit = self.timeout_s if timeout_s is None else min(timeout_s, self.timeout_s)
        with self._store.datastore.transaction(commit=False) as curs:
            if snapshot:
                curs.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            if tuned:
                tune(curs, self._work_mem)
            with guarded(curs, limit, handle):
                yield curs

    def preview(
        self,
        app_id: str,
        segment_id: str,
        definition: Definition,
        sample: int,
        *,
        timeout_s: float | None = None,
        handle: QueryHandle | None = None,
    ) -> dict[str, Any]:
        # One snapshot: the facts, the clock and the live members agree.
        with self._reading(timeout_s, handle, snapshot=True, tuned=True) as curs:
            curs.execute(
                f"SELECT notification_id FROM {schema.TRACKING_TABLE} WHERE application_name = %s",
                (LOG_NAME,),
            )
            row = curs.fetchone()
            position = int(row["notification_id"]) if row else 0
            curs.execute(f"SELECT value FROM {schema.META_TABLE} WHERE name = 'now_us'")
            row = curs.fetchone()
            now_us = int(row["value"]) if row else 0
            curs.execute(preview_query(app_id, segment_id, definition, position, now_us, sample))
            result = dict(curs.fetchone() or {})
        return {**result, "position": position, "now_us": now_us}

    def members_as_of(
        self,
        app_id: str,
        segment_id: str,
        as_of_us: int,
        after: str,
        limit: int,
        *,
        timeout_s: float | None = None,
        handle: QueryHandle | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of the members at `as_of_us` (each user's latest change of the segment
        up to it is an entry), and how many there were."""
        latest = (
            f"SELECT DISTINCT ON (user_id) user_id, to_value, effective_us"
            f" FROM {schema.CHANGES_TABLE}"
            " WHERE app_id = %s AND kind = 'membership' AND details->>'segment_id' = %s"
            " AND effective_us <= %s AND user_id > %s"
            " ORDER BY user_id, effective_us DESC, sequence DESC"
        )
        with self._reading(timeout_s, handle, snapshot=True) as curs:
            # Walk the as-of index in user order and stop at the page's end: the planner
            # cannot estimate details->>'segment_id' and would sort every change instead.
            curs.execute(
                "SELECT set_config('enable_seqscan', 'off', true),"
                " set_config('enable_bitmapscan', 'off', true), set_config('jit', 'off', true)"
            )
            curs.execute(
                f"SELECT user_id, effective_us AS since_us FROM ({latest}) l"
                " WHERE to_value = 'entered' ORDER BY user_id LIMIT %s",
                (app_id, segment_id, as_of_us, after, limit),
            )
            rows = list(curs.fetchall())
            curs.execute(
                "SELECT set_config('enable_seqscan', 'on', true),"
                " set_config('enable_bitmapscan', 'on', true)"
            )
            total = _rolled_up_size(curs, app_id, segment_id, as_of_us)
            if total is None:
                curs.execute(
                    f"SELECT count(*) AS n FROM ({latest}) l WHERE to_value = 'entered'",
                    (app_id, segment_id, as_of_us, ""),
                )
                row = curs.fetchone()
                total = int(row["n"]) if row else 0
        return rows, total

    def membership_as_of(
        self,
        app_id: str,
        segment_id: str,
        user_id: str,
        as_of_us: int,
        *,
        timeout_s: float | None = None,
        handle: QueryHandle | None = None,
    ) -> dict[str, Any] | None:
        with self._reading(timeout_s, handle) as curs:
            curs.execute(
                f"SELECT to_value, effective_us, details FROM {schema.CHANGES_TABLE}"
                " WHERE app_id = %s AND user_id = %s AND kind = 'membership'"
                " AND details->>'segment_id' = %s AND effective_us <= %s"
                " ORDER BY effective_us DESC, sequence DESC LIMIT 1",
                (app_id, user_id, segment_id, as_of_us),
            )
            row = curs.fetchone()
        if row is None or row["to_value"] != "entered":
            return None
        return {"since_us": row["effective_us"], "version": row["details"]["segment_version"]}

    def membership_history(
        self,
        app_id: str,
        user_id: str,
        segment_id: str,
        after_sequence: int,
        limit: int,
        *,
        timeout_s: float | None = None,
        handle: QueryHandle | None = None,
    ) -> list[dict[str, Any]]:
        with self._reading(timeout_s, handle) as curs:
            curs.execute(
                f"SELECT * FROM {schema.CHANGES_TABLE}"
                " WHERE app_id = %s AND user_id = %s AND kind = 'membership' AND sequence > %s"
                " AND (%s = '' OR details->>'segment_id' = %s) ORDER BY sequence LIMIT %s",
                (app_id, user_id, after_sequence, segment_id, segment_id, limit),
            )
            return list(curs.fetchall())


def combined_build(shares: list[dict[str, Any]]) -> dict[str, Any] | None:
    """One build of the partitions' shares: failed if one failed, stored when all are,
    running while any is; counts added up, from the first start to the last finish."""
    if not shares:
        return None
    if len(shares) == 1:
        return shares[0]
    failed = [s for s in shares if s["status"] == "failed"]
    status = (
        "failed"
        if failed
        else "running"
        if any(s["status"] == "running" for s in shares)
        else "stored"
    )
    finished = [s["finished_us"] for s in shares]
    return {
        "status": status,
        "events_done": sum(s["events_done"] for s in shares),
        "events_total": sum(s["events_total"] for s in shares),
        "users": sum(s["users"] for s in shares),
        "started_us": min(s["started_us"] for s in shares),
        "finished_us": None if status == "running" or None in finished else max(finished),
        "error": "; ".join(s["error"] for s in failed if s["error"]),
    }
