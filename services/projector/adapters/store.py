"""The projector's read models in PostgreSQL, committed with the tracked position.

One transaction per batch: each read model's writer (adapters/projection/) writes its
rows, then the recorded clock and the position of the batch's last event, through
eventsourcing's tracking recorder. A batch is either wholly visible or not at all, and
a replayed position is refused, so no event is ever applied twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg import Cursor
from psycopg.rows import DictRow

from services.common.database import conninfo_parts
from services.common.jetstream import ChangeSubjects
from services.eventlog.store import LOG_NAME
from services.projector import schema
from services.projector.adapters.projection import (
    apps,
    changes,
    facts,
    profiles,
    segments,
    snapshot,
)
from services.projector.adapters.projection.rows import PreparedBatch, prepare
from services.projector.domain.changeset import Drained
from services.projector.domain.engine import Engine

_WRITE_CLOCK = (
    f"INSERT INTO {schema.META_TABLE} (name, value) VALUES ('now_us', %s)"
    " ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value"
)


class ProjectorStore(PostgresTrackingRecorder):
    """Read models + tracking of the projector. Build with `open_store(url)`."""

    def __init__(self, datastore: PostgresDatastore, subjects: ChangeSubjects) -> None:
        super().__init__(datastore, tracking_table_name=schema.TRACKING_TABLE)
        self.subjects = subjects

    @contextmanager
    def cursor(self) -> Iterator[Cursor[DictRow]]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            yield curs

    def prepare(self, drained: Drained) -> PreparedBatch:
        """Rows of a drained batch (runs on the folding thread)."""
        return prepare(drained, self.subjects)

    def commit(
        self,
        batch: PreparedBatch,
        tracking: Tracking,
        also: Callable[[Cursor[DictRow]], None] | None = None,
    ) -> int:
        """Write one batch and its position in one transaction. Returns changes written.
        `also(curs)` writes more in the same transaction (the quarantine records)."""
        with self.datastore.transaction(commit=True) as curs:
            profiles.write(curs, batch.profiles)
            changes.write(curs, batch.changes)
            apps.write(curs, batch.apps)
            facts.write(curs, batch.facts)
            segments.write(curs, batch.segments)
            curs.execute(_WRITE_CLOCK, (batch.now_us,))
            if also is not None:
                also(curs)
            self._insert_tracking(curs, tracking)
        return batch.change_count

    def position(self) -> int:
        return self.max_tracking_id(LOG_NAME) or 0

    def load(self, engine: Engine) -> int:
        """Fill `engine` with the committed state; returns the committed position."""
        with self.datastore.transaction(commit=False) as curs:
            # One snapshot for everything, so state and position agree.
            curs.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            position = self._max_tracking_id(LOG_NAME, curs) or 0
            snapshot.read(curs, engine)
        return position


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
