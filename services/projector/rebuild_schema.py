"""The schema a rebuild builds into: made new (one that exists is refused), dropped when
the rebuild is done with it, or kept with the statement that drops it.

`create_schema` lays out empty read-model tables in a fresh schema; `leave` drops it, or
says where it stays and how to drop it, in one sentence for the command's output.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import psycopg
from psycopg import sql

from services.common.jetstream import ChangeSubjects
from services.projector import schema
from services.projector.adapters.store import open_store

# Subjects of the changes a rebuild would publish (it publishes none; its outbox keeps them).
SUBJECT_PREFIX = "rebuild"


class SchemaExists(ValueError):
    """The schema to build into exists already (a rebuild never writes into one it did not
    create, nor drops one)."""


def drop_statement(name: str) -> str:
    """The SQL that drops a rebuild's schema, as a person would type it."""
    quoted = name.replace('"', '""')
    return f'DROP SCHEMA "{quoted}" CASCADE'


def create_schema(database_url: str, name: str) -> None:
    """Create schema `name` with empty read-model tables; SchemaExists if it is there."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        try:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        except psycopg.errors.DuplicateSchema:
            msg = (
                f"schema {name} exists already; name a new one (or drop it: {drop_statement(name)})"
            )
            raise SchemaExists(msg) from None
        conn.execute(sql.SQL("SET search_path TO {}, public").format(sql.Identifier(name)))
        for statement in schema.STATEMENTS:
            conn.execute(statement)
    store = open_store(
        database_url,
        ChangeSubjects(SUBJECT_PREFIX),
        create_table=True,
        pool_size=1,
        schema_name=name,
    )
    store.datastore.close()


def drop_schema(database_url: str, name: str, lock_timeout_s: float = 10.0) -> None:
    """Drop a rebuild's schema and everything in it (waiting at most `lock_timeout_s` for
    its tables)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(f"{lock_timeout_s}s")))
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def leave(database_url: str, name: str, *, keep: bool) -> str:
    """Drop the rebuild's schema `name` unless `keep`; one sentence on what became of it (if
    it stays: where it is and how to drop it)."""
    where = f"in {without_password(database_url)}"
    if keep:
        return f"kept schema {name} {where}; drop it when done: {drop_statement(name)}"
    try:
        drop_schema(database_url, name)
    except psycopg.Error as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return f"could not drop schema {name} {where} ({reason}); drop it: {drop_statement(name)}"
    return f"dropped schema {name}"


def without_password(url: str) -> str:
    """`url` with its password, if any, masked."""
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url
