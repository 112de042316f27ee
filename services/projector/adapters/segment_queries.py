"""Reads behind SegmentService: definitions, members, memberships, the change feed."""

from __future__ import annotations

from typing import Any

from services.projector import schema
from services.projector.adapters.store import ProjectorStore


class SegmentQueries:
    def __init__(self, store: ProjectorStore) -> None:
        self._store = store

    def segment(self, app_id: str, segment_id: str) -> dict[str, Any] | None:
        with self._store.cursor() as curs:
            curs.execute(
                f"SELECT s.*, (SELECT count(*) FROM {schema.SEGMENT_MEMBERS_TABLE} m"
                "  WHERE m.app_id = s.app_id AND m.segment_id = s.segment_id) AS size"
                f" FROM {schema.SEGMENTS_TABLE} s WHERE app_id = %s AND segment_id = %s",
                (app_id, segment_id),
            )
            return curs.fetchone()

    def version(self, app_id: str, segment_id: str, version: int) -> dict[str, Any] | None:
        with self._store.cursor() as curs:
            curs.execute(
                f"SELECT * FROM {schema.SEGMENT_VERSIONS_TABLE}"
                " WHERE app_id = %s AND segment_id = %s AND version = %s",
                (app_id, segment_id, version),
            )
            return curs.fetchone()

    def build_progress(self, app_id: str, segment_id: str, version: int) -> dict[str, Any] | None:
        with self._store.cursor() as curs:
            curs.execute(
                f"SELECT * FROM {schema.SEGMENT_BUILD_PROGRESS_TABLE}"
                " WHERE app_id = %s AND segment_id = %s AND version = %s",
                (app_id, segment_id, version),
            )
            return curs.fetchone()

    def segments(
        self, app_id: str, after: str, limit: int, show_archived: bool
    ) -> list[dict[str, Any]]:
        with self._store.cursor() as curs:
            curs.execute(
                f"SELECT s.*, (SELECT count(*) FROM {schema.SEGMENT_MEMBERS_TABLE} m"
                "  WHERE m.app_id = s.app_id AND m.segment_id = s.segment_id) AS size"
                f" FROM {schema.SEGMENTS_TABLE} s WHERE app_id = %s AND segment_id > %s"
                " AND (%s OR state <> 'archived') ORDER BY segment_id LIMIT %s",
                (app_id, after, show_archived, limit),
            )
            return list(curs.fetchall())

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
            curs.execute(
                f"SELECT count(*) AS n FROM {schema.SEGMENT_MEMBERS_TABLE}"
                " WHERE app_id = %s AND segment_id = %s",
                (app_id, segment_id),
            )
            total = curs.fetchone()
            return rows, int(total["n"]) if total else 0

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
