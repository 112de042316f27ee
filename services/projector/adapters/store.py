"""The projector's read models in PostgreSQL, committed with the tracked position.

One transaction per batch: each read model's writer (adapters/projection/) writes its
rows, then the recorded clock and the position of the batch's last event, through
eventsourcing's tracking recorder. A batch is either wholly visible or not at all, and
a replayed position is refused, so no event is ever applied twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg import Cursor
from psycopg.rows import DictRow

from services.common.database import conninfo_parts
from services.common.jetstream import ChangeSubjects
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
from services.projector.partitions.mail import Mail, write_mail
from services.projector.partitions.scope import SINGLE, Scope

_WRITE_CLOCK = (
    f"INSERT INTO {schema.META_TABLE} (name, value, partition) VALUES ('now_us', %s, %s)"
    " ON CONFLICT (partition, name) DO UPDATE SET value = EXCLUDED.value"
)
# Advisory lock key serialising the change writes of the partitions of one database.
CHANGE_ORDER_LOCK = 0x63686E67  # "chng"
_TRACKED = (
    f"SELECT notification_id FROM {schema.TRACKING_TABLE} WHERE application_name = %s FOR UPDATE"
)


@dataclass(frozen=True)
class Relayed:
    """What a partitioned batch tells other partitions: its letters, the partition-0
    positions of the app-wide facts it relayed, and the highest partition-0 position this
    partition has folded a copy of."""

    mail: list[Mail]
    sent: list[int]
    relayed_through: int


_WRITE_RELAYED_THROUGH = (
    f"INSERT INTO {schema.META_TABLE} (name, value, partition) VALUES ('relayed_through', %s, %s)"
    " ON CONFLICT (partition, name) DO UPDATE SET value = EXCLUDED.value"
)
_WRITE_SENT = f"INSERT INTO {schema.RELAYED_TABLE} (position) VALUES (%s) ON CONFLICT DO NOTHING"


class LostPartition(Exception):
    """The partition's tracked position is not where this batch starts: another worker
    committed it meanwhile (this one lost its lease). Nothing of the batch is written."""


class ProjectorStore(PostgresTrackingRecorder):
    """Read models + tracking of the projector (of one partition: `scope`). Build with
    `open_store(url)`; `for_partition` shares the pool with another partition's store."""

    def __init__(
        self, datastore: PostgresDatastore, subjects: ChangeSubjects, scope: Scope = SINGLE
    ) -> None:
        super().__init__(datastore, tracking_table_name=schema.TRACKING_TABLE)
        self.subjects = subjects
        self.scope = scope

    def for_partition(self, scope: Scope) -> ProjectorStore:
        return ProjectorStore(self.datastore, self.subjects, scope)

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
        *,
        after: int | None = None,
        relayed: Relayed | None = None,
    ) -> int:
        """Write one batch and its position in one transaction. Returns changes written.
        `also(curs)` writes more in the same transaction (the quarantine records). With
        `after` (the notification id the batch follows), the partition's tracked position
        must still be that one, or LostPartition: the fence between two workers that both
        believe they hold the partition."""
        partition = self.scope.partition
        with self.datastore.transaction(commit=True) as curs:
            if after is not None:
                curs.execute(_TRACKED, (tracking.application_name,))
                row = curs.fetchone()
                tracked = int(row["notification_id"]) if row else 0
                if tracked != after:
                    msg = f"{tracking.application_name} is at {tracked}, this batch follows {after}"
                    raise LostPartition(msg)
            profiles.write(curs, batch.profiles, partition)
            apps.write(curs, batch.apps, partition)
            apps.write_rfm_values(curs, batch.rfm_values, batch.rfm_gone, partition)
            facts.write(curs, batch.facts)
            segments.write(curs, batch.segments, self.scope)
            curs.execute(_WRITE_CLOCK, (batch.now_us, partition))
            if relayed is not None:
                write_mail(curs, partition, relayed.mail)
                if relayed.sent:
                    curs.executemany(_WRITE_SENT, [(p,) for p in relayed.sent])
                curs.execute(_WRITE_RELAYED_THROUGH, (relayed.relayed_through, partition))
            if also is not None:
                also(curs)
            if batch.change_count and not self.scope.single:
                # Partitions sharing this database take their change ids in the order they
                # commit, so whatever reads the changes by id (rollups, watches) never
                # passes a row that commits later: held from here to the commit.
                curs.execute("SELECT pg_advisory_xact_lock(%s)", (CHANGE_ORDER_LOCK,))
            changes.write(curs, batch.changes, partition)
            self._insert_tracking(curs, tracking)
        return batch.change_count

    def position(self) -> int:
        """The partition's committed notification id."""
        return self.max_tracking_id(self.scope.log_name) or 0

    def relayed_through(self) -> int:
        """The highest partition-0 position this partition has folded a copy of."""
        with self.cursor() as curs:
            curs.execute(
                f"SELECT value FROM {schema.META_TABLE}"
                " WHERE name = 'relayed_through' AND partition = %s",
                (self.scope.partition,),
            )
            row = curs.fetchone()
            return int(row["value"]) if row else 0

    def load(self, engine: Engine) -> int:
        """Fill `engine` with the partition's committed state; returns its committed
        notification id."""
        with self.datastore.transaction(commit=False) as curs:
            # One snapshot for everything, so state and position agree.
            curs.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            position = self._max_tracking_id(self.scope.log_name, curs) or 0
            snapshot.read(curs, engine, self.scope.partition)
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
    scope: Scope = SINGLE,
) -> ProjectorStore:
    """The store; `schema_name` puts its tracking table there (a rebuild; the other tables
    follow the connection's search_path)."""
    store = ProjectorStore(store_env(database_url, pool_size, schema_name), subjects, scope)
    if create_table:
        store.create_table()
    return store
