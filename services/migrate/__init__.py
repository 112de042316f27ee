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
from services.eventlog import keyring
from services.eventlog.deployment_store import deployment_from_settings, record_deployment
from services.eventlog.partitioned import open_partitioned_log
from services.eventlog.partitions import Deployment
from services.ingest import schema as ingest_schema
from services.projector import read_contract, rollup_schema
from services.projector import schema as projector_schema
from services.projector.adapters.store import open_store
from services.projector.partitions import leases

# Table definitions of every service, in order. Each statement is idempotent.
SCHEMAS = [
    keyring.STATEMENTS,
    ingest_schema.STATEMENTS,
    [leases.CREATE_STATEMENT],
    projector_schema.STATEMENTS,
    read_contract.STATEMENTS,
    rollup_schema.STATEMENTS,
    campaign_schema.STATEMENTS,
    console_schema.STATEMENTS,
]

# Arbitrary but fixed key of the advisory lock that serialises migrations.
_MIGRATION_LOCK = 0x636F686F7274  # "cohort"


def migrate(database_url: str, *, partitions: int | None = None, placement: str = "") -> Deployment:
    """Create (or check) the deployment and every table, in every database it uses.

    The first migration of a home database records its partitions (default 1) and their
    placement; later ones must agree with the record (or leave `partitions` unset).
    """
    deployment = deployment_from_settings(database_url, partitions, placement)
    for url in deployment.databases():
        ensure_database(url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            if partitions is None:
                recorded = _recorded_partitions(conn)
                if recorded is not None and recorded != deployment.partitions:
                    deployment = deployment_from_settings(database_url, recorded, placement)
            record_deployment(conn, deployment)
            log = open_partitioned_log(deployment, create_table=True, pool_size=1)
            log.close()
            _create_campaign_stores(database_url)
            with conn.transaction():
                for statements in SCHEMAS:
                    for statement in statements:
                        conn.execute(statement)
            for url in deployment.databases():
                _create_read_models(url, conn if url == database_url else None)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
    return deployment


def _recorded_partitions(conn: psycopg.Connection) -> int | None:
    exists = conn.execute("SELECT to_regclass('cohortflow_deployment')").fetchone()
    if not exists or exists[0] is None:
        return None
    row = conn.execute("SELECT partitions FROM cohortflow_deployment").fetchone()
    return int(row[0]) if row else None


def _create_read_models(url: str, home: psycopg.Connection | None) -> None:
    """The projector's tables in a database that holds partitions (home included), and
    its read contract over them (campaign reads it in every such database)."""
    if home is None:
        with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
            for statements in (
                projector_schema.STATEMENTS,
                rollup_schema.STATEMENTS,
                read_contract.STATEMENTS,
            ):
                for statement in statements:
                    conn.execute(statement)
    store = open_store(url, ChangeSubjects("unused"), create_table=True, pool_size=1)
    store.datastore.close()


def _create_campaign_stores(database_url: str) -> None:
    """The campaign event store and the conversion tracking table."""
    open_campaign_store(database_url, create_table=True, pool_size=1).close()
    open_conversion_recorder(database_url, create_table=True, pool_size=1).datastore.close()
