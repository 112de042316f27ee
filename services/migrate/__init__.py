"""Create the database schema once, before services start (they run with CREATE_TABLE=n).

Serialised with a PostgreSQL advisory lock, so concurrent migrations (several
replicas starting, parallel tests) never race on catalog updates.
"""

from __future__ import annotations

import psycopg

from services.campaign import schema as campaign_schema
from services.campaign.adapters.conversions import open_conversion_recorder
from services.campaign.adapters.store import open_campaign_store
from services.common.database import ensure_database
from services.common.jetstream import ChangeSubjects
from services.console import schema as console_schema
from services.eventlog.store import open_event_log
from services.projector import read_contract, rollup_schema
from services.projector import schema as projector_schema
from services.projector.adapters.store import open_store

# Table definitions of every service, in order. Each statement is idempotent.
SCHEMAS = [
    projector_schema.STATEMENTS,
    read_contract.STATEMENTS,
    rollup_schema.STATEMENTS,
    campaign_schema.STATEMENTS,
    console_schema.STATEMENTS,
]

# Arbitrary but fixed key of the advisory lock that serialises migrations.
_MIGRATION_LOCK = 0x636F686F7274  # "cohort"


def migrate(database_url: str) -> None:
    ensure_database(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            log = open_event_log(database_url, create_table=True, pool_size=1)
            log.close()
            _create_campaign_stores(database_url)
            with conn.transaction():
                for statements in SCHEMAS:
                    for statement in statements:
                        conn.execute(statement)
            store = open_store(
                database_url, ChangeSubjects("unused"), create_table=True, pool_size=1
            )
            store.datastore.close()
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))


def _create_campaign_stores(database_url: str) -> None:
    """The campaign event store and the conversion tracking table."""
    open_campaign_store(database_url, create_table=True, pool_size=1).close()
    open_conversion_recorder(database_url, create_table=True, pool_size=1).datastore.close()
