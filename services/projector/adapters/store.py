"""The projector's read models in PostgreSQL, committed with the tracked position.

One transaction per batch writes changed profiles, the changes (timeline and
outbox) and the position of the batch's last event, through eventsourcing's
tracking recorder: a batch is either wholly visible or not at all, and a
replayed position is refused, so no event is ever applied twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb, set_json_dumps

from services.common.database import conninfo_parts
from services.common.jetstream import ChangeSubjects
from services.eventlog.store import LOG_NAME
from services.projector import schema
from services.projector.adapters.encode import encode
from services.projector.domain import location
from services.projector.domain.changes import Change
from services.projector.domain.changeset import (
    Drained,
    SegmentActivated,
    SegmentArchived,
    SegmentDefined,
    SegmentRecord,
)
from services.projector.domain.engine import Engine
from services.projector.domain.user import User

# orjson for jsonb values (details of changes).
set_json_dumps(orjson.dumps)


_HOT_COLUMNS = (
    "app_id, user_id, lifecycle_state, lifecycle_since, usual_interval_days, rfm_group,"
    " first_seen, last_seen, event_count, active_days, state, first_seen_us, geo_country,"
    " geo_city, geo_latitude, geo_longitude"
)
_STAGE_COLUMNS = (
    "app_id, user_id, lifecycle_state, lifecycle_since, usual_interval_days, rfm_group,"
    " first_seen, last_seen, event_count, active_days, state, geo_country, geo_city,"
    " geo_latitude, geo_longitude"
)
# Times travel as microseconds and become timestamps in the database (cheaper than
# building a datetime per value here).
_STAGE_PROFILES = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS profiles_stage ("
    " app_id text, user_id text, lifecycle_state text, lifecycle_since bigint,"
    " usual_interval_days double precision, rfm_group text, first_seen bigint,"
    " last_seen bigint, event_count bigint, active_days bigint, state bytea,"
    " geo_country text, geo_city text, geo_latitude float8, geo_longitude float8"
    ") ON COMMIT DELETE ROWS"
)
_STAGE_TYPES = [
    "text",
    "text",
    "text",
    "int8",
    "float8",
    "text",
    "int8",
    "int8",
    "int8",
    "int8",
    "bytea",
    "text",
    "text",
    "float8",
    "float8",
]
_COPY_PROFILES = f"COPY profiles_stage ({_STAGE_COLUMNS}) FROM STDIN WITH (FORMAT BINARY)"
_MERGE_PROFILES = f"""
INSERT INTO {schema.PROFILES_TABLE} ({_HOT_COLUMNS})
SELECT app_id, user_id, lifecycle_state, to_timestamp(lifecycle_since / 1e6),
       usual_interval_days, rfm_group, to_timestamp(first_seen / 1e6),
       to_timestamp(last_seen / 1e6), event_count, active_days, state, first_seen,
       geo_country, geo_city, geo_latitude, geo_longitude
FROM profiles_stage
ON CONFLICT (app_id, user_id) DO UPDATE SET
    lifecycle_state = EXCLUDED.lifecycle_state, lifecycle_since = EXCLUDED.lifecycle_since,
    usual_interval_days = EXCLUDED.usual_interval_days, rfm_group = EXCLUDED.rfm_group,
    first_seen = EXCLUDED.first_seen, last_seen = EXCLUDED.last_seen,
    event_count = EXCLUDED.event_count, active_days = EXCLUDED.active_days,
    state = EXCLUDED.state, first_seen_us = EXCLUDED.first_seen_us,
    geo_country = EXCLUDED.geo_country, geo_city = EXCLUDED.geo_city,
    geo_latitude = EXCLUDED.geo_latitude, geo_longitude = EXCLUDED.geo_longitude
"""
# Traits, contact, consent and location change only with Identify (and merges).
_UPDATE_PROFILE_FIELDS = f"""
UPDATE {schema.PROFILES_TABLE} SET
    traits = %s::jsonb, time_traits = %s::jsonb, email = %s, phone = %s, push_token = %s,
    consents = %s::jsonb, timezone = %s, country = %s, city = %s, latitude = %s, longitude = %s
WHERE app_id = %s AND user_id = %s
"""

_COPY_CHANGES = f"""
COPY {schema.CHANGES_TABLE} (
    app_id, user_id, sequence, change_id, kind, from_value, to_value, cause, event_ids,
    event_name, effective_us, recorded_us, position, correction, corrected_since_us, details
) FROM STDIN WITH (FORMAT BINARY)
"""
_CHANGE_TYPES = [
    "text",
    "text",
    "int8",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text[]",
    "text",
    "int8",
    "int8",
    "int8",
    "bool",
    "int8",
    "jsonb",
]

_COPY_OUTBOX = (
    f"COPY {schema.OUTBOX_TABLE} (subject, msg_id, msg_type, payload)"
    " FROM STDIN WITH (FORMAT BINARY)"
)
_OUTBOX_TYPES = ["text", "text", "text", "bytea"]


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _hot_row(user: User) -> tuple[Any, ...]:
    return (
        user.app_id,
        user.user_id,
        user.state,
        user.since_us,
        user.usual_gap_days,
        user.rfm_group,
        user.first_seen_us,
        user.last_seen_us,
        user.event_count,
        user.active_day_count,
        orjson.dumps(user.pack(), option=orjson.OPT_NON_STR_KEYS),
        *location.of_user(user),
    )


def _fields_row(user: User) -> tuple[Any, ...]:
    profile_location = user.location
    return (
        _json(user.traits),
        _json(user.time_traits),
        user.contact.get("email", ""),
        user.contact.get("phone", ""),
        user.contact.get("push_token", ""),
        _json(user.consents),
        user.timezone,
        profile_location.get("country", ""),
        profile_location.get("city", ""),
        profile_location.get("latitude"),
        profile_location.get("longitude"),
        user.app_id,
        user.user_id,
    )


def _details(change: Change) -> dict[str, Any]:
    if change.scores is not None:
        r, f, m = change.scores
        return {
            "scores": [r, f, m],
            "recency_days": change.recency_days,
            "purchases": change.purchases,
            "amount": change.amount,
        }
    if change.segment_id:
        return {
            "segment_id": change.segment_id,
            "segment_version": change.segment_version,
            "published": change.published,
        }
    return {}


def _change_row(c: Change) -> tuple[Any, ...]:
    return (
        c.app_id,
        c.user_id,
        c.sequence,
        c.change_id,
        c.kind,
        c.from_value,
        c.to_value,
        c.cause,
        list(c.event_ids),
        c.event_name,
        c.effective_us,
        c.recorded_us,
        c.position,
        c.correction,
        c.corrected_since_us,
        Jsonb(_details(c)),
    )


_COPY_FACTS = (
    f"COPY {schema.FACTS_TABLE} (app_id, user_id, name, event_time_us, position, props)"
    " FROM STDIN WITH (FORMAT BINARY)"
)
_FACT_TYPES = ["text", "text", "text", "int8", "int8", "jsonb"]
_STAGE_MEMBERS = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS members_stage (app_id text, segment_id text,"
    " user_id text, version bigint, since_us bigint, entered boolean, seq bigint)"
    " ON COMMIT DELETE ROWS"
)


def _write_members(curs: Cursor[DictRow], members: list[tuple[Any, ...]]) -> None:
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


def _segment_record(record: SegmentRecord) -> tuple[Any, ...]:
    """A segment record with plain values only (the definition as JSON)."""
    if isinstance(record, SegmentDefined):
        return (
            "defined",
            record.app_id,
            record.segment_id,
            record.version,
            record.position,
            record.recorded_us,
            record.display_name,
            record.description,
            _json(record.definition),
            record.silent,
        )
    if isinstance(record, SegmentActivated):
        return (
            "active",
            record.app_id,
            record.segment_id,
            record.version,
            record.position,
            record.recorded_us,
        )
    assert isinstance(record, SegmentArchived)
    return ("archived", record.app_id, record.segment_id, 0, record.position, record.recorded_us)


def _apply_segment_record(curs: Cursor[DictRow], record: tuple[Any, ...]) -> None:
    kind, app_id, segment_id, version, position, now_us = record[:6]
    if kind == "defined":
        display_name, description, definition, silent = record[6:]
        curs.execute(
            f"INSERT INTO {schema.SEGMENT_VERSIONS_TABLE} (app_id, segment_id, version,"
            " display_name, description, definition, silent, defined_position, defined_us,"
            " status) VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, 'building')"
            " ON CONFLICT DO NOTHING",
            (
                app_id,
                segment_id,
                version,
                display_name,
                description,
                definition,
                silent,
                position,
                now_us,
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
            (app_id, segment_id, display_name, description, version, version, now_us, now_us),
        )
    elif kind == "active":
        curs.execute(
            f"UPDATE {schema.SEGMENT_VERSIONS_TABLE} SET status = 'retired'"
            " WHERE app_id = %s AND segment_id = %s AND status = 'active'",
            (app_id, segment_id),
        )
        curs.execute(
            f"UPDATE {schema.SEGMENT_VERSIONS_TABLE} SET status = 'active',"
            " activated_position = %s, activated_us = %s"
            " WHERE app_id = %s AND segment_id = %s AND version = %s",
            (position, now_us, app_id, segment_id, version),
        )
        curs.execute(
            f"UPDATE {schema.SEGMENTS_TABLE} SET active_version = %s, state = 'active',"
            " building_version = CASE WHEN building_version = %s THEN 0"
            " ELSE building_version END, updated_us = %s"
            " WHERE app_id = %s AND segment_id = %s",
            (version, version, now_us, app_id, segment_id),
        )
    elif kind == "archived":
        curs.execute(
            f"UPDATE {schema.SEGMENT_VERSIONS_TABLE} SET status = 'archived'"
            " WHERE app_id = %s AND segment_id = %s AND status IN ('active', 'building')",
            (app_id, segment_id),
        )
        curs.execute(
            f"UPDATE {schema.SEGMENTS_TABLE} SET state = 'archived', building_version = 0,"
            " updated_us = %s WHERE app_id = %s AND segment_id = %s",
            (now_us, app_id, segment_id),
        )


@dataclass(frozen=True)
class PreparedBatch:
    """A drained batch turned into plain rows: safe to commit on another thread while
    the engine goes on folding (nothing here refers to live engine state)."""

    hot: list[tuple[Any, ...]]
    fields: list[tuple[Any, ...]]
    deleted: list[tuple[str, str]]
    changes: list[tuple[Any, ...]]
    outbox: list[tuple[str, str, str, bytes]]
    apps: list[tuple[str, str]]
    aliases: list[tuple[str, str, str]]
    now_us: int
    change_count: int
    facts: list[tuple[Any, ...]] = field(default_factory=list)
    merges: list[tuple[str, str, str]] = field(default_factory=list)
    segment_states: list[tuple[str, str]] = field(default_factory=list)
    segment_records: list[tuple[Any, ...]] = field(default_factory=list)
    members: list[tuple[Any, ...]] = field(default_factory=list)
    consumed_builds: list[tuple[str, str, int]] = field(default_factory=list)


class ProjectorStore(PostgresTrackingRecorder):
    """Read models + tracking of the projector. Build with `open_store(url)`."""

    def __init__(self, datastore: PostgresDatastore, subjects: ChangeSubjects) -> None:
        super().__init__(datastore, tracking_table_name=schema.TRACKING_TABLE)
        self.subjects = subjects

    @contextmanager
    def cursor(self) -> Iterator[Cursor[DictRow]]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            yield curs

    # ---- writing -------------------------------------------------------------------------

    def prepare(self, drained: Drained) -> PreparedBatch:
        """Rows of a drained batch (runs on the folding thread)."""
        outbox = []
        members = []
        for change in drained.changes:
            if change.published:
                subject, msg_type, payload = encode(change, self.subjects)
                outbox.append((subject, change.change_id, msg_type, payload))
            if change.segment_id:
                members.append(
                    (
                        change.app_id,
                        change.segment_id,
                        change.user_id,
                        change.segment_version,
                        change.effective_us,
                        change.to_value == "entered",
                    )
                )
        return PreparedBatch(
            hot=[_hot_row(u) for u in drained.users],
            fields=[_fields_row(u) for u in drained.profile_users],
            deleted=list(drained.deleted_users),
            changes=[_change_row(c) for c in drained.changes],
            outbox=outbox,
            apps=[(a, _json(app.to_dict())) for a, app in drained.apps.items()],
            aliases=[(a.app_id, a.anonymous_id, a.user_id) for a in drained.aliases],
            now_us=drained.now_us,
            change_count=len(drained.changes),
            facts=[(a, u, n, t, p, Jsonb(props)) for a, u, n, t, p, props in drained.facts],
            merges=list(drained.merges),
            segment_states=[(a, _json(seg.to_dict())) for a, seg in drained.segment_apps.items()],
            segment_records=[_segment_record(r) for r in drained.segment_records],
            members=members,
            consumed_builds=list(drained.consumed_builds),
        )

    def commit(
        self,
        batch: PreparedBatch | Drained,
        tracking: Tracking,
        also: Callable[[Cursor[DictRow]], None] | None = None,
    ) -> int:
        """Write one batch and its position in one transaction. Returns changes written.
        `also(curs)` writes more in the same transaction (the quarantine records)."""
        if isinstance(batch, Drained):
            batch = self.prepare(batch)
        with self.datastore.transaction(commit=True) as curs:
            if batch.hot:
                curs.execute(_STAGE_PROFILES)
                with curs.copy(_COPY_PROFILES) as copy:
                    copy.set_types(_STAGE_TYPES)
                    for row in batch.hot:
                        copy.write_row(row)
                curs.execute(_MERGE_PROFILES)
            if batch.fields:
                curs.executemany(_UPDATE_PROFILE_FIELDS, batch.fields)
            if batch.deleted:
                curs.executemany(
                    f"DELETE FROM {schema.PROFILES_TABLE} WHERE app_id = %s AND user_id = %s",
                    batch.deleted,
                )
            if batch.changes:
                with curs.copy(_COPY_CHANGES) as copy:
                    copy.set_types(_CHANGE_TYPES)
                    for row in batch.changes:
                        copy.write_row(row)
                with curs.copy(_COPY_OUTBOX) as copy:
                    copy.set_types(_OUTBOX_TYPES)
                    for row in batch.outbox:
                        copy.write_row(row)
            if batch.apps:
                curs.executemany(
                    f"INSERT INTO {schema.APPS_TABLE} (app_id, state) VALUES (%s, %s::jsonb)"
                    " ON CONFLICT (app_id) DO UPDATE SET state = EXCLUDED.state",
                    batch.apps,
                )
            if batch.aliases:
                curs.executemany(
                    f"INSERT INTO {schema.ALIASES_TABLE} (app_id, anonymous_id, user_id)"
                    " VALUES (%s, %s, %s) ON CONFLICT (app_id, anonymous_id)"
                    " DO UPDATE SET user_id = EXCLUDED.user_id",
                    batch.aliases,
                )
            if batch.facts:
                with curs.copy(_COPY_FACTS) as copy:
                    copy.set_types(_FACT_TYPES)
                    for row in batch.facts:
                        copy.write_row(row)
            if batch.merges:
                curs.executemany(
                    f"UPDATE {schema.FACTS_TABLE} SET user_id = %s"
                    " WHERE app_id = %s AND user_id = %s",
                    [(user, app, anonymous) for app, anonymous, user in batch.merges],
                )
                curs.executemany(
                    f"DELETE FROM {schema.SEGMENT_MEMBERS_TABLE}"
                    " WHERE app_id = %s AND user_id = %s",
                    [(app, anonymous) for app, anonymous, _ in batch.merges],
                )
            if batch.segment_states:
                curs.executemany(
                    f"INSERT INTO {schema.SEGMENTS_STATE_TABLE} (app_id, state)"
                    " VALUES (%s, %s::jsonb)"
                    " ON CONFLICT (app_id) DO UPDATE SET state = EXCLUDED.state",
                    batch.segment_states,
                )
            for record in batch.segment_records:
                _apply_segment_record(curs, record)
            if batch.members:
                _write_members(curs, batch.members)
            for app_id, segment_id, version in batch.consumed_builds:
                curs.execute(
                    f"DELETE FROM {schema.SEGMENT_BUILDS_TABLE}"
                    " WHERE app_id = %s AND segment_id = %s AND version = %s",
                    (app_id, segment_id, version),
                )
            curs.execute(
                f"INSERT INTO {schema.META_TABLE} (name, value) VALUES ('now_us', %s)"
                " ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
                (batch.now_us,),
            )
            if also is not None:
                also(curs)
            self._insert_tracking(curs, tracking)
        return batch.change_count

    # ---- loading -------------------------------------------------------------------------

    def position(self) -> int:
        return self.max_tracking_id(LOG_NAME) or 0

    def load(self, engine: Engine) -> int:
        """Fill `engine` with the committed state; returns the committed position."""
        with self.datastore.transaction(commit=False) as curs:
            # One snapshot for everything, so state and position agree.
            curs.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            position = self._max_tracking_id(LOG_NAME, curs) or 0
            curs.execute(f"SELECT value FROM {schema.META_TABLE} WHERE name = 'now_us'")
            row = curs.fetchone()
            engine.now_us = int(row["value"]) if row else 0
            curs.execute(f"SELECT state FROM {schema.PROFILES_TABLE} WHERE state IS NOT NULL")
            for row in curs:
                engine.load_user(User.unpack(orjson.loads(row["state"])))
            curs.execute(f"SELECT app_id, state FROM {schema.APPS_TABLE}")
            for row in curs.fetchall():
                engine.load_app(row["app_id"], row["state"])
            curs.execute(f"SELECT app_id, anonymous_id, user_id FROM {schema.ALIASES_TABLE}")
            for row in curs.fetchall():
                engine.load_alias(row["app_id"], row["anonymous_id"], row["user_id"])
            curs.execute(f"SELECT app_id, state FROM {schema.SEGMENTS_STATE_TABLE}")
            for row in curs.fetchall():
                engine.load_segments(row["app_id"], row["state"])
        return position

    # ---- outbox --------------------------------------------------------------------------

    def outbox_batch(self, limit: int) -> list[tuple[int, str, str, str, bytes]]:
        with self.cursor() as curs:
            curs.execute(
                f"SELECT id, subject, msg_id, msg_type, payload FROM {schema.OUTBOX_TABLE}"
                " ORDER BY id LIMIT %s",
                (limit,),
            )
            return [
                (r["id"], r["subject"], r["msg_id"], r["msg_type"], bytes(r["payload"]))
                for r in curs.fetchall()
            ]

    def outbox_delete_through(self, last_id: int) -> None:
        with self.cursor() as curs:
            curs.execute(f"DELETE FROM {schema.OUTBOX_TABLE} WHERE id <= %s", (last_id,))

    def outbox_depth(self) -> int:
        with self.cursor() as curs:
            curs.execute(f"SELECT count(*) AS n FROM {schema.OUTBOX_TABLE}")
            row = curs.fetchone()
            return int(row["n"]) if row else 0


def store_env(database_url: str, pool_size: int = 4, schema_name: str = "") -> PostgresDatastore:
    parts = conninfo_parts(database_url)
    return PostgresDatastore(
        dbname=parts["dbname"],
        host=parts["host"],
        port=parts["port"],
        user=parts["user"],
        password=parts["password"],
        pool_size=pool_size,
        connect_timeout=5,
        pre_ping=True,
        lock_timeout=10,
        schema=schema_name,
    )


def open_store(
    database_url: str,
    subjects: ChangeSubjects,
    *,
    create_table: bool = False,
    pool_size: int = 4,
    schema_name: str = "",
) -> ProjectorStore:
    """The store; `schema_name` puts its tracking table there (a rebuild; the other tables
    follow the connection's search_path)."""
    store = ProjectorStore(store_env(database_url, pool_size, schema_name), subjects)
    if create_table:
        store.create_table()
    return store
