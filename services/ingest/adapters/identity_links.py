"""Identity links for routing: (app, anonymous id) -> user id, in the home database.

Written when an Identify names both ids, before its event is appended; read for events
that name only an anonymous id. The newest link wins, as in the projector. A link read
a moment too early only delays routing: the anonymous id's old partition hands such a
straggler on to the user's partition (see the projector's identity hand-over).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from eventsourcing.postgres import PostgresDatastore

from services.ingest.schema import IDENTITY_LINKS_TABLE

Pair = tuple[str, str]  # (app id, anonymous id)


class IdentityLinks:
    def __init__(self, datastore: PostgresDatastore, *, ttl_s: float = 5.0) -> None:
        self._datastore = datastore
        self._ttl_s = ttl_s
        # Recently read links (user id, or "" for none) and when they were read.
        self._cache: dict[Pair, tuple[str, float]] = {}

    def record(self, app_id: str, anonymous_id: str, user_id: str) -> None:
        with self._datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                f"INSERT INTO {IDENTITY_LINKS_TABLE} (app_id, anonymous_id, user_id)"
                " VALUES (%s, %s, %s) ON CONFLICT (app_id, anonymous_id) DO UPDATE"
                " SET user_id = EXCLUDED.user_id, linked_at = now()"
                f" WHERE {IDENTITY_LINKS_TABLE}.user_id <> EXCLUDED.user_id",
                (app_id, anonymous_id, user_id),
            )
        self._cache[(app_id, anonymous_id)] = (user_id, time.monotonic())

    def lookup(self, pairs: Iterable[Pair]) -> dict[Pair, str]:
        """The linked user of each pair that has one (read at most `ttl_s` ago)."""
        now = time.monotonic()
        found: dict[Pair, str] = {}
        missing: list[Pair] = []
        for pair in set(pairs):
            cached = self._cache.get(pair)
            if cached is not None and now - cached[1] < self._ttl_s:
                if cached[0]:
                    found[pair] = cached[0]
            else:
                missing.append(pair)
        if missing:
            with self._datastore.get_connection() as conn, conn.cursor() as curs:
                curs.execute(
                    f"SELECT l.app_id, l.anonymous_id, l.user_id FROM {IDENTITY_LINKS_TABLE} l"
                    " JOIN unnest(%s::text[], %s::text[]) AS p(app_id, anonymous_id)"
                    " USING (app_id, anonymous_id)",
                    ([a for a, _ in missing], [b for _, b in missing]),
                )
                rows = {(r["app_id"], r["anonymous_id"]): r["user_id"] for r in curs.fetchall()}
            if len(self._cache) > 100_000:
                self._cache.clear()
            for pair in missing:
                user = rows.get(pair, "")
                self._cache[pair] = (user, now)
                if user:
                    found[pair] = user
        return found
