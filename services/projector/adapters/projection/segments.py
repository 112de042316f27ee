"""The segment read models: definitions and versions, the fold's segment state, members."""

from __future__ import annotations

from psycopg import Cursor
from psycopg.rows import DictRow

from services.projector import schema
from services.projector.adapters.projection.rows import (
    DefinedRow,
    MemberRow,
    SegmentRecordRow,
    SegmentRows,
)
from services.projector.domain.changeset import SegmentActivated, SegmentArchived
from services.projector.partitions.scope import SINGLE, Scope

_DELETE_MERGED = f"DELETE FROM {schema.SEGMENT_MEMBERS_TABLE} WHERE app_id = %s AND user_id = %s"
_UPSERT_STATE = (
    f"INSERT INTO {schema.SEGMENTS_STATE_TABLE} (app_id, state, partition)"
    " VALUES (%s, %s::jsonb, %s) ON CONFLICT (partition, app_id)"
    " DO UPDATE SET state = EXCLUDED.state"
)
_DELETE_BUILD = (
    f"DELETE FROM {schema.SEGMENT_BUILDS_TABLE}"
    " WHERE app_id = %s AND segment_id = %s AND version = %s AND partition = %s"
)
_STAGE_MEMBERS = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS members_stage (app_id text, segment_id text,"
    " user_id text, version bigint, since_us bigint, entered boolean, seq bigint)"
    " ON COMMIT DELETE ROWS"
)


def write(curs: Cursor[DictRow], rows: SegmentRows, scope: Scope = SINGLE) -> None:
    """Merged users' memberships go; then segment states, versions and members, and the
    rows of builds merged. Definitions and versions (app-wide) are partition 0's to write:
    every partition folds them, at its own position."""
    if rows.merged:
        curs.executemany(_DELETE_MERGED, rows.merged)
    if rows.states:
        curs.executemany(_UPSERT_STATE, [(*row, scope.partition) for row in rows.states])
    for record in rows.records:
        _queue_build(curs, record, scope.partition)
        if scope.home:
            _write_record(curs, record)
    if rows.members:
        _write_members(curs, rows.members)
    for build in rows.consumed_builds:
        curs.execute(_DELETE_BUILD, (*build, scope.partition))


def _queue_build(curs: Cursor[DictRow], row: SegmentRecordRow, partition: int) -> None:
    """Every partition builds its own share of a version, from its definition's position
    in the partition: queue it, and end the wait of the versions it replaces."""
    if isinstance(row, DefinedRow):
        record = row.record
        key = (record.app_id, record.segment_id, partition)
        curs.execute(
            f"UPDATE {schema.SEGMENT_BUILD_PROGRESS_TABLE} SET status = 'superseded'"
            " WHERE app_id = %s AND segment_id = %s AND partition = %s AND version < %s"
            " AND status IN ('waiting', 'running')",
            (*key, record.version),
        )
        curs.execute(
            f"INSERT INTO {schema.SEGMENT_BUILD_PROGRESS_TABLE} (app_id, segment_id, partition,"
            " version, status, through_position, started_us, definition)"
            " VALUES (%s, %s, %s, %s, 'waiting', %s, %s, %s::jsonb) ON CONFLICT DO NOTHING",
            (*key, record.version, record.position, record.recorded_us, row.definition),
        )
    elif isinstance(row, SegmentArchived):
        curs.execute(
            f"UPDATE {schema.SEGMENT_BUILD_PROGRESS_TABLE} SET status = 'archived'"
            " WHERE app_id = %s AND segment_id = %s AND partition = %s"
            " AND status IN ('waiting', 'running')",
            (row.app_id, row.segment_id, partition),
        )


def _write_record(curs: Cursor[DictRow], row: SegmentRecordRow) -> None:
    if isinstance(row, DefinedRow):
        record = row.record
        curs.execute(
            f"INSERT INTO {schema.SEGMENT_VERSIONS_TABLE} (app_id, segment_id, version,"
            " display_name, description, definition, silent, defined_position, defined_us,"
            " status) VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, 'building')"
            " ON CONFLICT DO NOTHING",
            (
                record.app_id,
                record.segment_id,
                record.version,
                record.display_name,
                record.description,
                row.definition,
                record.silent,
                record.position,
                record.recorded_us,
            ),
        )
        curs.execute(
            f"INSERT INTO {schema.SEGMENTS_TABLE} (app_id, segment_id, display_name,"
            " description, latest_version, building_version, state, created_us, updated_us)"
            " VALUES (%s, %s, %s, %s, %s, %s, 'building', %s, %s)"
            " ON CONFLICT (app_id, segment_id) DO UPDATE SET"
            " display_name = EXCLUDED.display_name, description = EXCLUDED.description,"
            " latest_version = EXCLUDED.latest_version,"
            " building_version = EXCLUDED.building_version, updated_us = EXCLUDED.updated_us",
            (
                record.app_id,
                record.segment_id,
                record.display_name,
                record.description,
                record.version,
                record.version,
                record.recorded_us,
                record.recorded_us,
            ),
        )
    elif isinstance(row, SegmentActivated):
        key = (row.app_id, row.segment_id)
        curs.execute(
            f"UPDATE {schema.SEGMENT_VERSIONS_TABLE} SET status = 'retired'"
            " WHERE app_id = %s AND segment_id = %s AND status = 'active'",
            key,
        )
        curs.execute(
            f"UPDATE {schema.SEGMENT_VERSIONS_TABLE} SET status = 'active',"
            " activated_position = %s, activated_us = %s"
            " WHERE app_id = %s AND segment_id = %s AND version = %s",
            (row.position, row.recorded_us, *key, row.version),
        )
        curs.execute(
            f"UPDATE {schema.SEGMENTS_TABLE} SET active_version = %s, state = 'active',"
            " building_version = CASE WHEN building_version = %s THEN 0"
            " ELSE building_version END, updated_us = %s"
            " WHERE app_id = %s AND segment_id = %s",
            (row.version, row.version, row.recorded_us, *key),
        )
    elif isinstance(row, SegmentArchived):
        key = (row.app_id, row.segment_id)
        curs.execute(
            f"UPDATE {schema.SEGMENT_VERSIONS_TABLE} SET status = 'archived'"
            " WHERE app_id = %s AND segment_id = %s AND status IN ('active', 'building')",
            key,
        )
        curs.execute(
            f"UPDATE {schema.SEGMENTS_TABLE} SET state = 'archived', building_version = 0,"
            " updated_us = %s WHERE app_id = %s AND segment_id = %s",
            (row.recorded_us, *key),
        )


def _write_members(curs: Cursor[DictRow], members: list[MemberRow]) -> None:
    """Apply entries and exits to segment_members: the last one per member wins."""
    curs.execute(_STAGE_MEMBERS)
    with curs.copy(
        "COPY members_stage (app_id, segment_id, user_id, version, since_us, entered, seq)"
        " FROM STDIN WITH (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["text", "text", "text", "int8", "int8", "bool", "int8"])
        for seq, row in enumerate(members):
            copy.write_row((*row, seq))
    curs.execute(
        "CREATE TEMPORARY TABLE IF NOT EXISTS members_last (LIKE members_stage)"
        " ON COMMIT DELETE ROWS"
    )
    curs.execute(
        "INSERT INTO members_last SELECT DISTINCT ON (app_id, segment_id, user_id) *"
        " FROM members_stage ORDER BY app_id, segment_id, user_id, seq DESC"
    )
    curs.execute(
        f"DELETE FROM {schema.SEGMENT_MEMBERS_TABLE} m USING members_last l"
        " WHERE NOT l.entered AND m.app_id = l.app_id AND m.segment_id = l.segment_id"
        " AND m.user_id = l.user_id"
    )
    curs.execute(
        f"INSERT INTO {schema.SEGMENT_MEMBERS_TABLE} (app_id, segment_id, user_id, version,"
        " since_us) SELECT app_id, segment_id, user_id, version, since_us FROM members_last"
        " WHERE entered ON CONFLICT (app_id, segment_id, user_id) DO UPDATE"
        " SET version = EXCLUDED.version, since_us = EXCLUDED.since_us"
    )
