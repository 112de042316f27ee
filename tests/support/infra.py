"""Real PostgreSQL and NATS for tests: the machine's own if present, else embedded ones.

Order of choice: COHORTFLOW_TEST_DATABASE_URL / COHORTFLOW_TEST_NATS_URL if set;
else servers on the standard local ports (as on CI machines); else embedded
servers from the PyPI wheels in a temp dir (as on a fresh laptop). Set
COHORTFLOW_TEST_EMBEDDED=1 to force the embedded servers.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

from services.common.database import with_database
from services.devstack.embedded import EmbeddedNats, EmbeddedPostgres

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_NATS = "nats://127.0.0.1:4222"


def force_embedded() -> bool:
    return os.environ.get("COHORTFLOW_TEST_EMBEDDED", "") not in ("", "0", "no")


def _postgres_reachable(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


class PostgresForTests:
    def __init__(self, tmp: Path) -> None:
        self.embedded: EmbeddedPostgres | None = None
        url = os.environ.get("COHORTFLOW_TEST_DATABASE_URL")
        if not url and not force_embedded() and _postgres_reachable(LOCAL_POSTGRES):
            url = LOCAL_POSTGRES
        if not url:
            self.embedded = EmbeddedPostgres(tmp / "postgres")
            url = self.embedded.start()
        self.server_url = with_database(url, "postgres")

    def create_database(self) -> str:
        """A new, empty database with a unique name; its URL."""
        name = f"cf_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return with_database(self.server_url, name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[-1]
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def close(self) -> None:
        if self.embedded is not None:
            self.embedded.stop()


class NatsForTests:
    def __init__(self, tmp: Path) -> None:
        self.embedded: EmbeddedNats | None = None
        url = os.environ.get("COHORTFLOW_TEST_NATS_URL")
        if not url and not force_embedded() and _port_open("127.0.0.1", 4222):
            url = LOCAL_NATS
        if not url:
            self.embedded = EmbeddedNats(tmp / "nats")
            url = self.embedded.start()
        self.url = url

    def close(self) -> None:
        if self.embedded is not None:
            self.embedded.stop()
