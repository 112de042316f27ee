"""The campaign service's PostgreSQL connections: its pool, and the eventsourcing environment
of its event store and conversion tracking.

Statements are planned at every execution, for its own parameters and the tables as
they are now: no server-side prepared statements (`prepare_threshold=None`). psycopg
prepares a statement after its 5th execution, and PostgreSQL then switches to a
cached generic plan after 5 more; planned while the delivery log and the profiles
were nearly empty, that plan scans the whole table once per user of a batch and
stays until the next ANALYZE invalidates it (minutes on a young, fast-growing
table): 1 to 4 s per batch of 256 at 30k rows, measured. Planning each time costs
a fraction of a millisecond.
"""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

from services.eventlog.store import eventlog_env


def connection_pool(database_url: str, max_size: int) -> AsyncConnectionPool:
    """A pool of up to `max_size` connections, not opened yet."""
    return AsyncConnectionPool(
        database_url,
        min_size=min(2, max_size),
        max_size=max_size,
        kwargs={"prepare_threshold": None},
        open=False,
    )


def store_env(database_url: str, *, create_table: bool = False, pool_size: int = 2) -> dict:
    """eventsourcing environment of the campaign store and the conversion recorder: the
    log's settings with the library's own recorder (they are not the event log)."""
    env = eventlog_env(database_url, create_table=create_table, pool_size=pool_size)
    env.pop("APPLICATION_RECORDER_TOPIC", None)
    return env
