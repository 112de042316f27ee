"""Direct reads of the stored log, to check what ingest really committed."""

from __future__ import annotations

import psycopg

from services.eventlog.events import EventTracked, UserIdentified
from services.eventlog.keyring import Keyring
from services.eventlog.sealing import unseal_all
from services.eventlog.store import open_event_log


def stored_rows(database_url: str) -> list[tuple[int, str]]:
    """(position, topic) of every stored event, in log order."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT notification_id, topic FROM cohortflow_events ORDER BY notification_id"
        ).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def stored_events(database_url: str) -> list[EventTracked | UserIdentified]:
    """Every stored event in log order, personal fields unsealed as readers see them."""
    log = open_event_log(database_url, pool_size=1)
    try:
        return unseal_all(sealed_events(database_url), Keyring(log.log_recorder.datastore))
    finally:
        log.close()


def sealed_events(database_url: str) -> list[EventTracked | UserIdentified]:
    """Every stored event in log order, as stored (personal fields sealed)."""
    log = open_event_log(database_url, pool_size=1)
    try:
        notifications = log.recorder.select_notifications(start=None, limit=1_000_000)
        return [log.mapper.to_domain_event(n) for n in notifications]  # type: ignore[misc]
    finally:
        log.close()
