"""Mail between partitions: written with a batch, appended to the receiver's log later.

A fold that must tell another partition something (hand over an anonymous user, relay
an app-wide fact) produces `Mail`; the store writes it in the batch's own transaction
(so it exists exactly when the batch committed), and this relay appends each letter to
its receiver's log under the letter's deterministic id, then deletes it. A letter
appended twice (a crash between append and delete, a rebuild re-sending) is stored
once: the receiver's log refuses the id.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresDatastore
from psycopg import Cursor

from services.eventlog.partitioned import PartitionedLog

_log = structlog.get_logger("projector.mail")

MAIL_TABLE = "projector_mail"

CREATE_STATEMENTS = [
    f"""
    CREATE TABLE IF NOT EXISTS {MAIL_TABLE} (
        id bigserial PRIMARY KEY,
        source integer NOT NULL,
        target integer NOT NULL,
        originator_id uuid NOT NULL,
        topic text NOT NULL,
        state bytea NOT NULL
    )
    """,
    f"CREATE INDEX IF NOT EXISTS {MAIL_TABLE}_source ON {MAIL_TABLE} (source, id)",
]


@dataclass(frozen=True)
class Mail:
    """One letter: an event for partition `target`, already encoded."""

    target: int
    stored: StoredEvent


def write_mail(curs: Cursor[Any], source: int, letters: Iterable[Mail]) -> None:
    """Inside the batch's transaction: keep the letters until the relay has sent them."""
    rows = [
        (source, m.target, m.stored.originator_id, m.stored.topic, m.stored.state) for m in letters
    ]
    if rows:
        curs.executemany(
            f"INSERT INTO {MAIL_TABLE} (source, target, originator_id, topic, state)"
            " VALUES (%s, %s, %s, %s, %s)",
            rows,
        )


# (a database's pool, the partitions there whose letters this process sends)
Sources = Callable[[], list[tuple[PostgresDatastore, list[int]]]]


class MailRelay:
    """Appends the letters of the partitions this worker holds to their receivers."""

    def __init__(self, log: PartitionedLog, sources: Sources, *, batch: int = 500) -> None:
        self._log = log
        self._sources = sources
        self._batch = batch

    def send_once(self) -> int:
        """One round over every database; how many letters were sent."""
        return sum(self._send(pool, held) for pool, held in self._sources() if held)

    def _send(self, pool: PostgresDatastore, sources: list[int]) -> int:
        with pool.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                f"SELECT id, target, originator_id, topic, state FROM {MAIL_TABLE}"
                " WHERE source = ANY(%s) ORDER BY id LIMIT %s",
                (sources, self._batch),
            )
            rows = curs.fetchall()
        if not rows:
            return 0
        by_target: dict[int, list[StoredEvent]] = {}
        for row in rows:
            by_target.setdefault(int(row["target"]), []).append(
                StoredEvent(
                    originator_id=uuid.UUID(str(row["originator_id"])),
                    originator_version=1,
                    topic=row["topic"],
                    state=bytes(row["state"]),
                )
            )
        for target, letters in sorted(by_target.items()):
            self._log.append(target, _unique(letters))
        with pool.get_connection() as conn, conn.cursor() as curs:
            curs.execute(f"DELETE FROM {MAIL_TABLE} WHERE id = ANY(%s)", ([r["id"] for r in rows],))
        return len(rows)

    def run(self, stop: threading.Event, idle_s: float = 0.2) -> None:
        while not stop.is_set():
            try:
                if self.send_once():
                    continue
            except Exception as error:  # a database or partition away: the next round
                _log.warning("mail not sent yet", error=repr(error))
            stop.wait(idle_s)


def _unique(letters: list[StoredEvent]) -> list[StoredEvent]:
    seen: set[uuid.UUID] = set()
    out = []
    for letter in letters:
        if letter.originator_id not in seen:
            seen.add(letter.originator_id)  # type: ignore[arg-type]
            out.append(letter)
    return out
