"""PostgreSQL connection strings and database creation."""

from __future__ import annotations

import time
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo


def conninfo_parts(database_url: str) -> dict[str, str]:
    """host, port, dbname, user, password of a libpq URL or key=value string."""
    parts = conninfo_to_dict(database_url)
    return {
        "host": str(parts.get("host") or "127.0.0.1"),
        "port": str(parts.get("port") or "5432"),
        "dbname": str(parts.get("dbname") or "cohortflow"),
        "user": str(parts.get("user") or "postgres"),
        "password": str(parts.get("password") or ""),
    }


def with_database(database_url: str, dbname: str) -> str:
    """The same server and credentials, another database (URL in, URL out)."""
    parsed = urlsplit(database_url)
    if parsed.scheme in ("postgres", "postgresql"):
        return urlunsplit(parsed._replace(path="/" + quote(dbname)))
    return make_conninfo(database_url, dbname=dbname)


def ensure_database(database_url: str, timeout: float = 30.0) -> bool:
    """Create the database named in `database_url` unless it exists. True if created.

    Waits up to `timeout` seconds for the server to accept connections.
    """
    dbname = conninfo_parts(database_url)["dbname"]
    admin_url = with_database(database_url, "postgres")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
                exists = conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)
                ).fetchone()
                if exists:
                    return False
                try:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
                except psycopg.errors.DuplicateDatabase:
                    return False
                return True
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
