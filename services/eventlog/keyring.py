"""The keyring: one AES key per (app, subject), outside the log, in the home database.

A subject is a user id, or `anonymous:<id>` for events that name only an anonymous id
(see sealing.py). Each key row also names its `owner`, the canonical user: the subject
itself for a user, the user an Identify linked it to for an anonymous id. Erasing a user
destroys (sets NULL) every live key they own and records the erasure in the audit table
in the same transaction; the audit rows are never deleted. A subject seen again after
its erasure gets a new key (a new id), so the erased events stay unreadable.

Writers (ingest) get or create active keys, cached for `active_ttl_s` (so a key erased by
another process may still seal events for that long: they are erased too). Readers
(projector, campaign) read keys by id through a bounded LRU; a destroyed key reads None.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

from eventsourcing.postgres import PostgresDatastore

from services.eventlog.sealing import new_key

KEYS_TABLE = "cohortflow_user_keys"
ERASURES_TABLE = "cohortflow_erasures"

STATEMENTS = [
    f"""
    CREATE TABLE IF NOT EXISTS {KEYS_TABLE} (
        key_id uuid PRIMARY KEY,
        app_id text NOT NULL,
        -- The user id, or "anonymous:<anonymous id>".
        subject text NOT NULL,
        -- The canonical user: the subject's user id, or the user it was linked to.
        owner text NOT NULL,
        -- AES-256-GCM key; NULL once erased.
        key bytea,
        created_at timestamptz NOT NULL DEFAULT now(),
        erased_at timestamptz
    )
    """,
    f"CREATE UNIQUE INDEX IF NOT EXISTS {KEYS_TABLE}_live"
    f" ON {KEYS_TABLE} (app_id, subject) WHERE erased_at IS NULL",
    f"CREATE INDEX IF NOT EXISTS {KEYS_TABLE}_owner ON {KEYS_TABLE} (app_id, owner)",
    # Who asked to erase whom, and when: never deleted (not even by an erasure).
    f"""
    CREATE TABLE IF NOT EXISTS {ERASURES_TABLE} (
        app_id text NOT NULL,
        request_id text NOT NULL,
        user_id text NOT NULL,
        requested_by text NOT NULL,
        requested_at timestamptz NOT NULL DEFAULT now(),
        key_ids uuid[] NOT NULL,
        subjects text[] NOT NULL,
        PRIMARY KEY (app_id, request_id)
    )
    """,
]

Subject = tuple[str, str]  # (app id, subject)


@dataclass(frozen=True)
class Erasure:
    """One erasure as audited: what it destroyed (empty when nothing was left)."""

    app_id: str
    request_id: str
    user_id: str
    requested_by: str
    requested_at: datetime
    key_ids: tuple[uuid.UUID, ...]
    subjects: tuple[str, ...]


class RequestReused(ValueError):
    """The request id was already used to erase another user."""


class Keyring:
    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        cache_size: int = 100_000,
        active_ttl_s: float = 30.0,
    ) -> None:
        self._datastore = datastore
        self._cache_size = cache_size
        self._ttl_s = active_ttl_s
        self._lock = threading.Lock()
        self._by_id: OrderedDict[uuid.UUID, bytes | None] = OrderedDict()
        self._active: OrderedDict[Subject, tuple[uuid.UUID, bytes, float]] = OrderedDict()

    # ---- writers ---------------------------------------------------------------------

    def active_keys(
        self, subjects: Iterable[Subject], owners: dict[Subject, str] | None = None
    ) -> dict[Subject, tuple[uuid.UUID, bytes]]:
        """The live key of each subject, created if it has none. `owners` names the user
        an anonymous subject belongs to (an Identify linking both): recorded on its key."""
        owners = owners or {}
        now = time.monotonic()
        found: dict[Subject, tuple[uuid.UUID, bytes]] = {}
        missing: list[Subject] = []
        with self._lock:
            for subject in set(subjects) | set(owners):
                cached = self._active.get(subject)
                if cached is not None and now - cached[2] < self._ttl_s and subject not in owners:
                    found[subject] = (cached[0], cached[1])
                else:
                    missing.append(subject)
        if missing:
            loaded = self._load_or_create(missing, owners)
            with self._lock:
                for subject, pair in loaded.items():
                    found[subject] = pair
                    self._active[subject] = (*pair, now)
                    self._active.move_to_end(subject)
                while len(self._active) > self._cache_size:
                    self._active.popitem(last=False)
        return found

    def _load_or_create(
        self, subjects: list[Subject], owners: dict[Subject, str]
    ) -> dict[Subject, tuple[uuid.UUID, bytes]]:
        apps = [a for a, _ in subjects]
        names = [s for _, s in subjects]
        owned = [owners.get(p) or p[1] for p in subjects]
        with self._datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            curs.execute(
                f"INSERT INTO {KEYS_TABLE} (key_id, app_id, subject, owner, key)"
                " SELECT * FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[], %s::bytea[])"
                " ON CONFLICT (app_id, subject) WHERE erased_at IS NULL DO UPDATE"
                " SET owner = EXCLUDED.owner"
                f" WHERE {KEYS_TABLE}.owner <> EXCLUDED.owner"
                f" AND EXCLUDED.owner <> {KEYS_TABLE}.subject",
                (
                    [uuid.uuid4() for _ in subjects],
                    apps,
                    names,
                    owned,
                    [new_key() for _ in subjects],
                ),
            )
            curs.execute(
                f"SELECT k.app_id, k.subject, k.key_id, k.key FROM {KEYS_TABLE} k"
                " JOIN unnest(%s::text[], %s::text[]) AS p(app_id, subject) USING (app_id, subject)"
                " WHERE k.erased_at IS NULL",
                (apps, names),
            )
            return {(r["app_id"], r["subject"]): (r["key_id"], r["key"]) for r in curs.fetchall()}

    # ---- readers ---------------------------------------------------------------------

    def keys(self, key_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, bytes | None]:
        """Each key by id; None for a destroyed (or unknown) one."""
        out: dict[uuid.UUID, bytes | None] = {}
        missing: list[uuid.UUID] = []
        with self._lock:
            for key_id in key_ids:
                if key_id in self._by_id:
                    out[key_id] = self._by_id[key_id]
                    self._by_id.move_to_end(key_id)
                else:
                    missing.append(key_id)
        if missing:
            with self._datastore.get_connection() as conn, conn.cursor() as curs:
                curs.execute(
                    f"SELECT key_id, key FROM {KEYS_TABLE} WHERE key_id = ANY(%s::uuid[])",
                    (missing,),
                )
                rows = {r["key_id"]: r["key"] for r in curs.fetchall()}
            with self._lock:
                for key_id in missing:
                    key = rows.get(key_id)
                    out[key_id] = bytes(key) if key is not None else None
                    self._by_id[key_id] = out[key_id]
                while len(self._by_id) > self._cache_size:
                    self._by_id.popitem(last=False)
        return out

    def forget(self, key_ids: Iterable[uuid.UUID]) -> None:
        """Drop cached keys (a reader that folded their erasure)."""
        with self._lock:
            for key_id in key_ids:
                self._by_id[key_id] = None

    # ---- erasure ---------------------------------------------------------------------

    def erase(self, app_id: str, user_id: str, request_id: str, requested_by: str) -> Erasure:
        """Destroy every live key `user_id` owns and audit it, in one transaction.
        Idempotent by request id: a repeated request returns the recorded erasure."""
        with self._datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            curs.execute(
                f"SELECT * FROM {ERASURES_TABLE} WHERE app_id = %s AND request_id = %s",
                (app_id, request_id),
            )
            row = curs.fetchone()
            if row is None:
                curs.execute(
                    f"UPDATE {KEYS_TABLE} SET key = NULL, erased_at = now()"
                    " WHERE app_id = %s AND (owner = %s OR subject = %s) AND erased_at IS NULL"
                    " RETURNING key_id, subject",
                    (app_id, user_id, user_id),
                )
                destroyed = sorted((r["subject"], r["key_id"]) for r in curs.fetchall())
                curs.execute(
                    f"INSERT INTO {ERASURES_TABLE}"
                    " (app_id, request_id, user_id, requested_by, key_ids, subjects)"
                    " VALUES (%s, %s, %s, %s, %s, %s) RETURNING *",
                    (
                        app_id,
                        request_id,
                        user_id,
                        requested_by,
                        [k for _, k in destroyed],
                        [s for s, _ in destroyed],
                    ),
                )
                row = curs.fetchone()
            assert row is not None
        if row["user_id"] != user_id:
            msg = f"request {request_id!r} erased another user"
            raise RequestReused(msg)
        erasure = Erasure(
            app_id,
            row["request_id"],
            row["user_id"],
            row["requested_by"],
            row["requested_at"],
            tuple(row["key_ids"]),
            tuple(row["subjects"]),
        )
        with self._lock:
            for subject in erasure.subjects:
                self._active.pop((app_id, subject), None)
            for key_id in erasure.key_ids:
                self._by_id[key_id] = None
        return erasure
