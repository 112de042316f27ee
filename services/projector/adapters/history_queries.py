"""Previews and time travel behind SegmentService: set-based over the facts and the change
timeline, in every database of the deployment (adapters/fanout.py) and merged."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from services.common.segments.definition import Definition
from services.eventlog.partitions import encode_position
from services.projector import rollup_schema as rs
from services.projector import schema
from services.projector.adapters.fanout import Fanout, first_page
from services.projector.adapters.history import WORK_MEM, tune
from services.projector.adapters.preview import preview_query
from services.projector.adapters.query_guard import QUERY_TIMEOUT_S, QueryHandle, guarded
from services.projector.adapters.rollups import DAY_US
from services.projector.adapters.store import ProjectorStore

_SAMPLES = ("sample", "enter_sample", "exit_sample")
_COUNTS = ("members", "entering", "exiting")


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
    cancellable through the `handle` a call passes (on every database it runs on).
    """

    def __init__(
        self,
        stores: ProjectorStore | Fanout,
        work_mem: str = WORK_MEM,
        timeout_s: float = QUERY_TIMEOUT_S,
    ) -> None:
        self._fan = Fanout.of(stores)
        self._work_mem = work_mem
        self.timeout_s = timeout_s

    @contextlib.contextmanager
    def _reading(
        self,
        store: ProjectorStore,
        timeout_s: float | None,
        handle: QueryHandle | None,
        *,
        snapshot: bool = False,
        tuned: bool = False,
    ) -> Iterator[Any]:
        limit = self.timeout_s if timeout_s is None else min(timeout_s, self.timeout_s)
        with store.datastore.transaction(commit=False) as curs:
            if snapshot:
                curs.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            if tuned:
                tune(curs, self._work_mem)
            with guarded(curs, limit, handle):
                yield curs

    def _clock(self, store: ProjectorStore) -> tuple[int, int]:
        with store.cursor() as curs:
            return self._clock_of(curs)

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
        """Who the definition selects at the recorded clock, against the live members.

        One partition: one snapshot, so the facts, the clock and the live members agree.
        Several: each database in a snapshot of its own, at the earliest clock of every
        partition (what all of them have reached), over all the facts it holds; the
        position is partition 0's."""
        if self._fan.deployment.partitions == 1:
            store = self._fan.stores[0]
            with self._reading(store, timeout_s, handle, snapshot=True, tuned=True) as curs:
                now_us, position = self._clock_of(curs)
                curs.execute(
                    preview_query(app_id, segment_id, definition, position, now_us, sample)
                )
                result = dict(curs.fetchone() or {})
            return {**result, "position": position, "now_us": now_us}
        clocks = self._fan.each(self._clock)
        now_us = min(now for now, _ in clocks)
        position = encode_position(0, max(at for _, at in clocks))

        def run(store: ProjectorStore) -> dict[str, Any]:
            with self._reading(store, timeout_s, handle, snapshot=True, tuned=True) as curs:
                curs.execute(preview_query(app_id, segment_id, definition, None, now_us, sample))
                return dict(curs.fetchone() or {})

        parts = self._fan.each(run)
        merged: dict[str, Any] = {key: sum(int(p[key]) for p in parts) for key in _COUNTS}
        for key in _SAMPLES:
            merged[key] = first_page([p[key] for p in parts], str, sample)
        return {**merged, "position": position, "now_us": now_us}

    def _clock_of(self, curs: Any) -> tuple[int, int]:
        """(the earliest recorded clock of the database's partitions, the notification id
        partition 0 has folded if it is there, else 0)."""
        curs.execute(f"SELECT min(value) AS now_us FROM {schema.META_TABLE} WHERE name = 'now_us'")
        row = curs.fetchone()
        now_us = int(row["now_us"]) if row and row["now_us"] is not None else 0
        curs.execute(
            f"SELECT notification_id FROM {schema.TRACKING_TABLE} WHERE application_name = %s",
            (self._fan.deployment.log_name(0),),
        )
        row = curs.fetchone()
        return now_us, int(row["notification_id"]) if row else 0

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
        parts = self._fan.each(
            lambda store: self._members_as_of(
                store, app_id, segment_id, as_of_us, after, limit, timeout_s, handle
            )
        )
        rows = first_page([rows for rows, _ in parts], lambda r: r["user_id"], limit)
        return rows, sum(total for _, total in parts)

    def _members_as_of(
        self,
        store: ProjectorStore,
        app_id: str,
        segment_id: str,
        as_of_us: int,
        after: str,
        limit: int,
        timeout_s: float | None,
        handle: QueryHandle | None,
    ) -> tuple[list[dict[str, Any]], int]:
        latest = (
            f"SELECT DISTINCT ON (user_id) user_id, to_value, effective_us"
            f" FROM {schema.CHANGES_TABLE}"
            " WHERE app_id = %s AND kind = 'membership' AND details->>'segment_id' = %s"
            " AND effective_us <= %s AND user_id > %s"
            " ORDER BY user_id, effective_us DESC, sequence DESC"
        )
        with self._reading(store, timeout_s, handle, snapshot=True) as curs:
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
        store = self._fan.of_user(app_id, user_id)
        with self._reading(store, timeout_s, handle) as curs:
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
        store = self._fan.of_user(app_id, user_id)
        with self._reading(store, timeout_s, handle) as curs:
            curs.execute(
                f"SELECT * FROM {schema.CHANGES_TABLE}"
                " WHERE app_id = %s AND user_id = %s AND kind = 'membership' AND sequence > %s"
                " AND (%s = '' OR details->>'segment_id' = %s) ORDER BY sequence LIMIT %s",
                (app_id, user_id, after_sequence, segment_id, segment_id, limit),
            )
            return list(curs.fetchall())
