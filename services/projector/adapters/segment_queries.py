"""Reads behind SegmentService: definitions, members, memberships, the change feed.

Definitions and versions are read in partition 0's database; sizes, members and the
change feed in every database, merged (adapters/fanout.py); one user's rows in theirs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from eventsourcing.persistence import OperationalError

from services.eventlog.partitions import POSITION_BITS
from services.projector import rollup_schema as rs
from services.projector import schema
from services.projector.adapters.fanout import Fanout, first_page, summed
from services.projector.adapters.store import ProjectorStore
from services.projector.domain.segments.build_shares import combined_build

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
# The sizes of segments (by id) in a database without their rows (not partition 0's).
_SIZES = (
    "SELECT s.segment_id, {size} AS size FROM"
    " (SELECT %(app)s::text AS app_id, unnest(%(ids)s::text[]) AS segment_id) s"
)


def _folded_up_to(curs: Any) -> int:
    """The last change row the rollups have folded (0: none yet)."""
    curs.execute(f"SELECT last_id FROM {rs.POSITION_TABLE} WHERE name = %s", (rs.FOLD_NAME,))
    row = curs.fetchone()
    return int(row["last_id"]) if row else 0


def _lock_not_available(error: BaseException) -> bool:
    cause = error.__cause__
    return isinstance(cause, psycopg.errors.LockNotAvailable)


def _sized(store: ProjectorStore, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of `query` with its {size} filled in: from the rollups, or by counting if the
    change table is locked."""
    try:
        with store.datastore.transaction(commit=False) as curs:
            # One snapshot: the rollups' position and their sums agree (a fold committed
            # between two statements would count its changes twice).
            curs.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            curs.execute("SELECT set_config('lock_timeout', %s, true)", (_LOCK_WAIT,))
            folded = _folded_up_to(curs)
            curs.execute(query.format(size=_SIZE), {**params, "folded": folded})
            return list(curs.fetchall())
    except OperationalError as error:
        if not _lock_not_available(error):
            raise
    with store.cursor() as curs:
        curs.execute(query.format(size=_COUNTED), params)
        return list(curs.fetchall())


# A segment's changes after a watch's `after_position`: that position names a partition,
# and orders only that partition's changes (those of the others all follow it).
_AFTER_POSITION = f"(position >> {POSITION_BITS} <> %s >> {POSITION_BITS} OR position > %s)"


class SegmentQueries:
    def __init__(self, stores: ProjectorStore | Fanout) -> None:
        self._fan = Fanout.of(stores)

    @property
    def databases(self) -> int:
        """How many databases the change feed is read from (one cursor id each)."""
        return len(self._fan.stores)

    def _sized_rows(self, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Rows of `query` (keyed by segment_id) from partition 0's database, the only one
        with the segments' rows, each with its `size` added up over every database."""
        definitions = _sized(self._fan.definitions, query, params)
        if self._fan.single or not definitions:
            return definitions
        ids = [row["segment_id"] for row in definitions]
        others = [store for store in self._fan.stores if store is not self._fan.definitions]
        sizes = summed(
            {row["segment_id"]: int(row["size"]) for row in part}
            for part in self._fan.each_of(
                others, lambda store: _sized(store, _SIZES, {"app": params["app"], "ids": ids})
            )
        )
        return [
            {**row, "size": int(row["size"]) + sizes.get(row["segment_id"], 0)}
            for row in definitions
        ]

    def segment(self, app_id: str, segment_id: str) -> dict[str, Any] | None:
        rows = self._sized_rows(
            f"SELECT s.*, {{size}} AS size FROM {schema.SEGMENTS_TABLE} s"
            " WHERE app_id = %(app)s AND segment_id = %(segment)s",
            {"app": app_id, "segment": segment_id},
        )
        return rows[0] if rows else None

    def version(self, app_id: str, segment_id: str, version: int) -> dict[str, Any] | None:
        with self._fan.definitions.cursor() as curs:
            curs.execute(
                f"SELECT * FROM {schema.SEGMENT_VERSIONS_TABLE}"
                " WHERE app_id = %s AND segment_id = %s AND version = %s",
                (app_id, segment_id, version),
            )
            return curs.fetchone()

    def build_progress(self, app_id: str, segment_id: str, version: int) -> dict[str, Any] | None:
        """The build of a version, over every partition's share of it (None: not begun)."""

        def shares(store: ProjectorStore) -> list[dict[str, Any]]:
            with store.cursor() as curs:
                curs.execute(
                    f"SELECT * FROM {schema.SEGMENT_BUILD_PROGRESS_TABLE}"
                    " WHERE app_id = %s AND segment_id = %s AND version = %s"
                    " AND status IN ('running', 'stored', 'failed')",
                    (app_id, segment_id, version),
                )
                return list(curs.fetchall())

        return combined_build([row for part in self._fan.each(shares) for row in part])

    def segments(
        self, app_id: str, after: str, limit: int, show_archived: bool
    ) -> list[dict[str, Any]]:
        return self._sized_rows(
            f"SELECT s.*, {{size}} AS size FROM {schema.SEGMENTS_TABLE} s"
            " WHERE app_id = %(app)s AND segment_id > %(after)s"
            " AND (%(archived)s OR state <> 'archived') ORDER BY segment_id LIMIT %(limit)s",
            {"app": app_id, "after": after, "archived": show_archived, "limit": limit},
        )

    def latest_definitions(self, app_id: str) -> dict[str, dict[str, Any]]:
        """segment_id -> latest definition, of the app's segments not archived."""
        with self._fan.definitions.cursor() as curs:
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
        """A page of the members in user order after `after`, and how many there are."""

        def page(store: ProjectorStore) -> list[dict[str, Any]]:
            with store.cursor() as curs:
                curs.execute(
                    f"SELECT user_id, since_us FROM {schema.SEGMENT_MEMBERS_TABLE}"
                    " WHERE app_id = %s AND segment_id = %s AND user_id > %s"
                    " ORDER BY user_id LIMIT %s",
                    (app_id, segment_id, after, limit),
                )
                return list(curs.fetchall())

        rows = first_page(self._fan.each(page), lambda r: r["user_id"], limit)
        total = self._sized_rows(
            f"SELECT s.segment_id, {{size}} AS size FROM {schema.SEGMENTS_TABLE} s"
            " WHERE app_id = %(app)s AND segment_id = %(segment)s",
            {"app": app_id, "segment": segment_id},
        )
        return rows, int(total[0]["size"]) if total else 0

    def membership(self, app_id: str, segment_id: str, user_id: str) -> dict[str, Any] | None:
        with self._fan.of_user(app_id, user_id).cursor() as curs:
            curs.execute(
                f"SELECT version, since_us FROM {schema.SEGMENT_MEMBERS_TABLE}"
                " WHERE app_id = %s AND segment_id = %s AND user_id = %s",
                (app_id, segment_id, user_id),
            )
            return curs.fetchone()

    def user_segments(self, app_id: str, user_id: str) -> list[dict[str, Any]]:
        with self._fan.of_user(app_id, user_id).cursor() as curs:
            curs.execute(
                f"SELECT segment_id, version, since_us FROM {schema.SEGMENT_MEMBERS_TABLE}"
                " WHERE app_id = %s AND user_id = %s ORDER BY segment_id",
                (app_id, user_id),
            )
            return list(curs.fetchall())

    def membership_changes(
        self,
        app_id: str,
        segment_id: str,
        after_ids: Sequence[int],
        after_position: int,
        limit: int,
    ) -> list[tuple[int, dict[str, Any]]]:
        """(database, change) of the published membership changes after `after_ids` (the
        last change id read from each database) and `after_position`: up to `limit` of
        each database, in its commit order, the databases interleaved by recorded time."""

        def feed(index: int, store: ProjectorStore) -> list[tuple[int, dict[str, Any]]]:
            with store.cursor() as curs:
                curs.execute(
                    f"SELECT * FROM {schema.CHANGES_TABLE}"
                    " WHERE app_id = %s AND kind = 'membership' AND id > %s"
                    f" AND {_AFTER_POSITION}"
                    " AND (%s = '' OR details->>'segment_id' = %s)"
                    " AND coalesce((details->>'published')::boolean, true)"
                    " ORDER BY id LIMIT %s",
                    (
                        app_id,
                        after_ids[index],
                        after_position,
                        after_position,
                        segment_id,
                        segment_id,
                        limit,
                    ),
                )
                return [(index, row) for row in curs.fetchall()]

        parts = self._fan.each(lambda store: feed(self._fan.index(store), store))
        if len(parts) == 1:
            return parts[0]
        return first_page(parts, lambda item: item[1]["recorded_us"], limit * len(parts))
