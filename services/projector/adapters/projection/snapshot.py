"""Reading the committed state back into a fresh engine (on start, and after a failure)."""

from __future__ import annotations

import orjson
from psycopg import Cursor
from psycopg.rows import DictRow

from services.projector import schema
from services.projector.domain.engine import Engine
from services.projector.domain.user import User


def read(curs: Cursor[DictRow], engine: Engine, partition: int = 0) -> None:
    """Fill `engine` with one partition's state from the read models, in the caller's
    (one-snapshot) transaction."""
    p = (partition,)
    curs.execute(
        f"SELECT value FROM {schema.META_TABLE} WHERE name = 'now_us' AND partition = %s", p
    )
    row = curs.fetchone()
    engine.now_us = int(row["value"]) if row else 0
    curs.execute(
        f"SELECT state FROM {schema.PROFILES_TABLE} WHERE state IS NOT NULL AND partition = %s",
        p,
    )
    for row in curs:
        engine.load_user(User.unpack(orjson.loads(row["state"])))
    curs.execute(f"SELECT app_id, state FROM {schema.APPS_TABLE} WHERE partition = %s", p)
    for row in curs.fetchall():
        engine.load_app(row["app_id"], row["state"])
    curs.execute(
        f"SELECT app_id, anonymous_id, user_id FROM {schema.ALIASES_TABLE} WHERE partition = %s",
        p,
    )
    for row in curs.fetchall():
        engine.load_alias(row["app_id"], row["anonymous_id"], row["user_id"])
    curs.execute(f"SELECT app_id, state FROM {schema.SEGMENTS_STATE_TABLE} WHERE partition = %s", p)
    for row in curs.fetchall():
        engine.load_segments(row["app_id"], row["state"])
