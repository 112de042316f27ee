"""The projector's read models in PostgreSQL, committed with the tracked position.

One transaction per batch writes changed profiles, the changes (timeline and
outbox) and the position of the batch's last event, through eventsourcing's
tracking recorder: a batch is either wholly visible or not at all, and a
replayed position is refused, so no event is ever applied twice.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from services.common.database import conninfo_parts
from services.common.jetstream import ChangeSubjects
from services.eventlog.store import LOG_NAME
from services.projector import schema
from services.projector.adapters.encode import encode
from services.projector.domain.changes import Change
from services.projector.domain.engine import Drained, Engine
from services.projector.domain.user import User


def _ts(us: int | None) -> datetime | None:
    return None if us is None else datetime.fromtimestamp(us / 1_000_000, tz=UTC)


_UPSERT_PROFILE = f"""
INSERT INTO {schema.PROFILES_TABLE} (
    app_id, user_id, traits, time_traits, email, phone, push_token, consents, timezone,
    country, city, latitude, longitude, lifecycle_state, lifecycle_since, usual_interval_days,
    rfm_group, rfm_scores, first_seen, last_seen, event_count, event_counts, active_days, state
) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
          %s, %s, %s, %s)
ON CONFLICT (app_id, user_id) DO UPDATE SET
    traits = EXCLUDED.traits, time_traits = EXCLUDED.time_traits, email = EXCLUDED.email,
    phone = EXCLUDED.phone, push_token = EXCLUDED.push_token, consents = EXCLUDED.consents,
    timezone = EXCLUDED.timezone, country = EXCLUDED.country, city = EXCLUDED.city,
    latitude = EXCLUDED.latitude, longitude = EXCLUDED.longitude,
    lifecycle_state = EXCLUDED.lifecycle_state, lifecycle_since = EXCLUDED.lifecycle_since,
    usual_interval_days = EXCLUDED.usual_interval_days, rfm_group = EXCLUDED.rfm_group,
    rfm_scores = EXCLUDED.rfm_scores, first_seen = EXCLUDED.first_seen,
    last_seen = EXCLUDED.last_seen, event_count = EXCLUDED.event_count,
    event_counts = EXCLUDED.event_counts, active_days = EXCLUDED.active_days,
    state = EXCLUDED.state
"""

_INSERT_CHANGE = f"""
INSERT INTO {schema.CHANGES_TABLE} (
    app_id, user_id, sequence, change_id, kind, from_value, to_value, cause, event_ids,
    event_name, effective_time, recorded_time, position, correction, corrected_since, details
) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
"""

_INSERT_OUTBOX = (
    f"INSERT INTO {schema.OUTBOX_TABLE} (subject, msg_id, msg_type, payload)"
    " VALUES (%s, %s, %s, %s)"
)


def _profile_row(user: User, usual_gap: float) -> tuple[Any, ...]:
    location = user.location
    return (
        user.app_id,
        user.user_id,
        Jsonb(user.traits),
        Jsonb(user.time_traits),
        user.contact.get("email", ""),
        user.contact.get("phone", ""),
        user.contact.get("push_token", ""),
        Jsonb(user.consents),
        user.timezone,
        location.get("country", ""),
        location.get("city", ""),
        location.get("latitude"),
        location.get("longitude"),
        user.state,
        _ts(user.since_us),
        usual_gap,
        user.rfm_group,
        Jsonb(dict(zip(("recency", "frequency", "monetary"), user.rfm_scores, strict=False))),
        _ts(user.first_seen_us),
        _ts(user.last_seen_us),
        user.event_count,
        Jsonb(user.event_counts),
        user.active_day_count,
        orjson.dumps(user.to_dict()),
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
        return {"segment_id": change.segment_id, "segment_version": change.segment_version}
    return {}


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

    def commit(self, drained: Drained, tracking: Tracking, usual_gaps: dict[Any, float]) -> int:
        """Write one batch and its position in one transaction. Returns changes written."""
        with self.datastore.transaction(commit=True) as curs:
            if drained.users:
                curs.executemany(
                    _UPSERT_PROFILE,
                    [_profile_row(u, usual_gaps.get(u.key, 0.0)) for u in drained.users],
                )
            if drained.deleted_users:
                curs.executemany(
                    f"DELETE FROM {schema.PROFILES_TABLE} WHERE app_id = %s AND user_id = %s",
                    drained.deleted_users,
                )
            if drained.changes:
                self._write_changes(curs, drained.changes)
            for app_id, app in drained.apps.items():
                curs.execute(
                    f"INSERT INTO {schema.APPS_TABLE} (app_id, state) VALUES (%s, %s)"
                    " ON CONFLICT (app_id) DO UPDATE SET state = EXCLUDED.state",
                    (app_id, Jsonb(app.to_dict())),
                )
            if drained.aliases:
                curs.executemany(
                    f"INSERT INTO {schema.ALIASES_TABLE} (app_id, anonymous_id, user_id)"
                    " VALUES (%s, %s, %s) ON CONFLICT (app_id, anonymous_id)"
                    " DO UPDATE SET user_id = EXCLUDED.user_id",
                    [(a, anon, u) for (a, anon), u in drained.aliases.items()],
                )
            curs.execute(
                f"INSERT INTO {schema.META_TABLE} (name, value) VALUES ('now_us', %s)"
                " ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
                (drained.now_us,),
            )
            self._insert_tracking(curs, tracking)
        return len(drained.changes)

    def _write_changes(self, curs: Cursor[DictRow], changes: Sequence[Change]) -> None:
        curs.executemany(
            _INSERT_CHANGE,
            [
                (
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
                    _ts(c.effective_us),
                    _ts(c.recorded_us),
                    c.position,
                    c.correction,
                    _ts(c.corrected_since_us),
                    Jsonb(_details(c)),
                )
                for c in changes
            ],
        )
        outbox = []
        for change in changes:
            subject, msg_type, payload = encode(change, self.subjects)
            outbox.append((subject, change.change_id, msg_type, payload))
        curs.executemany(_INSERT_OUTBOX, outbox)

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
                engine.load_user(User.from_dict(orjson.loads(row["state"])))
            curs.execute(f"SELECT app_id, state FROM {schema.APPS_TABLE}")
            for row in curs.fetchall():
                engine.load_app(row["app_id"], row["state"])
            curs.execute(f"SELECT app_id, anonymous_id, user_id FROM {schema.ALIASES_TABLE}")
            for row in curs.fetchall():
                engine.load_alias(row["app_id"], row["anonymous_id"], row["user_id"])
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


def store_env(database_url: str, pool_size: int = 4) -> PostgresDatastore:
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
    )


def open_store(
    database_url: str, subjects: ChangeSubjects, *, create_table: bool = False, pool_size: int = 4
) -> ProjectorStore:
    store = ProjectorStore(store_env(database_url, pool_size), subjects)
    if create_table:
        store.create_table()
    return store
