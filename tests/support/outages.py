"""Outages for health tests: a database that refuses connections, a NATS server of the
test's own that goes away and comes back on the same port and store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

from services.devstack.embedded import EmbeddedNats


@contextmanager
def database_refusing(server_url: str, database_url: str) -> Iterator[None]:
    """While inside: the database of `database_url` refuses new connections and every
    connection it had is cut (as when it is down); afterwards it accepts them again."""
    name = database_url.rsplit("/", 1)[-1]
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name))
        )
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            yield
        finally:
            admin.execute(
                sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(
                    sql.Identifier(name)
                )
            )


class OwnNats:
    """A NATS server (JetStream) of one test, which it may stop and start again."""

    def __init__(self, data_dir: Path) -> None:
        self._dir = data_dir
        self.server = EmbeddedNats(data_dir)
        self.url = self.server.start()
        self.port = self.server.port

    def stop(self) -> None:
        self.server.stop()

    def restart(self) -> None:
        """Back on the same port, with the same store."""
        self.server = EmbeddedNats(self._dir, self.port)
        self.server.start()
