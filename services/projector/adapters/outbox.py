"""The outbox as the relay reads it: committed changes in commit order, deleted once sent."""

from __future__ import annotations

from collections.abc import Callable

from services.projector import schema
from services.projector.adapters.store import ProjectorStore


class OutboxQueries:
    """The outbox of a database. With `partitions` (partitioned deployments), only the rows
    of the partitions it names (those this process holds): each partition's changes are
    published by its holder, in its commit order."""

    def __init__(
        self, store: ProjectorStore, partitions: Callable[[], list[int]] | None = None
    ) -> None:
        self._store = store
        self._partitions = partitions

    def batch(self, limit: int) -> list[tuple[int, str, str, str, bytes]]:
        """The oldest `limit` rows: (id, subject, message id, message type, payload)."""
        with self._store.cursor() as curs:
            if self._partitions is None:
                curs.execute(
                    f"SELECT id, subject, msg_id, msg_type, payload FROM {schema.OUTBOX_TABLE}"
                    " ORDER BY id LIMIT %s",
                    (limit,),
                )
            else:
                curs.execute(
                    f"SELECT id, subject, msg_id, msg_type, payload FROM {schema.OUTBOX_TABLE}"
                    " WHERE partition = ANY(%s) ORDER BY id LIMIT %s",
                    (self._partitions(), limit),
                )
            return [
                (r["id"], r["subject"], r["msg_id"], r["msg_type"], bytes(r["payload"]))
                for r in curs.fetchall()
            ]

    def delete(self, ids: list[int]) -> None:
        """Forget published rows (by id: other partitions' rows may lie between them)."""
        with self._store.cursor() as curs:
            curs.execute(f"DELETE FROM {schema.OUTBOX_TABLE} WHERE id = ANY(%s)", (ids,))

    def depth(self) -> int:
        with self._store.cursor() as curs:
            curs.execute(f"SELECT count(*) AS n FROM {schema.OUTBOX_TABLE}")
            row = curs.fetchone()
            return int(row["n"]) if row else 0

    def oldest_seconds(self) -> float:
        """Seconds since the oldest change waiting was committed (0: the outbox is empty)."""
        with self._store.cursor() as curs:
            curs.execute(
                "SELECT extract(epoch FROM clock_timestamp() - created_at) AS age"
                f" FROM {schema.OUTBOX_TABLE} ORDER BY id LIMIT 1"
            )
            row = curs.fetchone()
            return max(0.0, float(row["age"])) if row else 0.0
