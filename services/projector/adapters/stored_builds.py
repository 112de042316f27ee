"""The build of a segment version, loaded when the fold reaches its Segment.Built.

The builder stored it (the tracker states as of the definition); a replay into fresh
tables (a rebuild) computes it on the spot from the committed facts, so everything
folded before the Segment.Built must be committed first (the runner does that).
"""

from __future__ import annotations

from typing import Any

from services.projector import schema
from services.projector.adapters.history import compute_states
from services.projector.adapters.query_guard import apply_limits
from services.projector.adapters.store import ProjectorStore
from services.projector.domain.segments.versions import BuildHistory, BuildRequest


class StoredBuilds:
    """Builds for `Engine.merge_build`: stored build rows, or (replays) computed on the spot."""

    def __init__(self, store: ProjectorStore) -> None:
        self._store = store

    def load(self, request: BuildRequest) -> BuildHistory:
        """The build `request` (Engine.build_wanted) names: per stored user id, its trackers'
        states as of the definition."""
        app_id, segment_id, version = request.app_id, request.segment_id, request.version
        keys = {spec.key for spec in request.specs}
        with self._store.datastore.transaction(commit=False) as curs:
            key = (app_id, segment_id, version, self._store.scope.partition)
            curs.execute(
                f"SELECT status FROM {schema.SEGMENT_BUILD_PROGRESS_TABLE}"
                " WHERE app_id = %s AND segment_id = %s AND version = %s AND partition = %s",
                key,
            )
            row = curs.fetchone()
            if row is not None and row["status"] == "stored":
                curs.execute(
                    f"SELECT user_id, states FROM {schema.SEGMENT_BUILDS_TABLE}"
                    " WHERE app_id = %s AND segment_id = %s AND version = %s AND partition = %s",
                    key,
                )
                return {
                    r["user_id"]: {k: v for k, v in r["states"].items() if k in keys}
                    for r in curs.fetchall()
                }
        # Not stored (a rebuild replays the log into fresh tables): compute it now. No
        # statement timeout: this build succeeded once, and the fold needs its result; the
        # connection check still stops it if this process dies.
        with self._store.datastore.transaction(commit=False) as cursor:
            apply_limits(cursor, None)
            return compute_states(
                _tuples(cursor), app_id, list(request.specs), request.through_position
            )


class _TupleCursor:
    """Adapts a dict-row cursor to the tuple rows compute_states reads."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def execute(self, query: Any) -> None:
        self._cursor.execute(query)

    def fetchone(self) -> tuple[Any, ...]:
        row = self._cursor.fetchone()
        return tuple(row.values())

    def fetchall(self) -> list[tuple[Any, ...]]:
        return [tuple(row.values()) for row in self._cursor.fetchall()]


def _tuples(cursor: Any) -> _TupleCursor:
    return _TupleCursor(cursor)
