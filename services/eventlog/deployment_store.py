"""The deployment record: how many partitions, fixed when the deployment is created.

`services.migrate` writes it once into the home database; every service reads it at
start. A setting that disagrees with the record stops the service with an error naming
both (changing P would move users between partitions: a new deployment, not a restart).
"""

from __future__ import annotations

import json

import psycopg

from services.common.database import conninfo_parts
from services.eventlog.partitions import Deployment, PlacementError, log_name, parse_placement

DEPLOYMENT_TABLE = "cohortflow_deployment"

CREATE_STATEMENT = f"""
CREATE TABLE IF NOT EXISTS {DEPLOYMENT_TABLE} (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    partitions integer NOT NULL,
    -- Where each partition lives: host:port/dbname (no credentials), in partition order.
    databases jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
)
"""


class DeploymentMismatch(PlacementError):
    """The settings describe another deployment than the one recorded."""


def _identity(url: str) -> str:
    parts = conninfo_parts(url)
    return f"{parts['host']}:{parts['port']}/{parts['dbname']}"


def deployment_from_settings(home_url: str, partitions: int | None, placement: str) -> Deployment:
    count = 1 if partitions is None else partitions
    return Deployment(count, parse_placement(placement, count, home_url), home_url)


def record_deployment(conn: psycopg.Connection, deployment: Deployment) -> Deployment:
    """Record `deployment` unless one is recorded; the recorded one must agree with it."""
    conn.execute(CREATE_STATEMENT)
    if deployment.partitions > 1:
        _refuse_over_one_log(conn, deployment)
    identities = [_identity(url) for url in deployment.placement]
    conn.execute(
        f"INSERT INTO {DEPLOYMENT_TABLE} (partitions, databases) VALUES (%s, %s)"
        " ON CONFLICT (singleton) DO NOTHING",
        (deployment.partitions, json.dumps(identities)),
    )
    _check(conn, deployment, explicit=True)
    return deployment


def _refuse_over_one_log(conn: psycopg.Connection, deployment: Deployment) -> None:
    """A database whose events are in the one-partition log, recorded before partitions
    existed, has one partition: recording more would leave those events unread."""
    if conn.execute(f"SELECT 1 FROM {DEPLOYMENT_TABLE}").fetchone() is not None:
        return  # recorded: `_check` compares
    table = f"{log_name(0, 1)}_events"
    exists = conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()
    if not exists or exists[0] is None:
        return
    if conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:
        msg = (
            f"COHORTFLOW_PARTITIONS={deployment.partitions}, but this database's events are in"
            f" one log (table {table}, from before partitions): it has 1 partition; set"
            " COHORTFLOW_PARTITIONS=1 or leave it unset"
        )
        raise DeploymentMismatch(msg)


def _check(conn: psycopg.Connection, deployment: Deployment, *, explicit: bool) -> int | None:
    row = conn.execute(f"SELECT partitions, databases FROM {DEPLOYMENT_TABLE}").fetchone()
    if row is None:
        return None
    recorded, databases = int(row[0]), list(row[1])
    if explicit and recorded != deployment.partitions:
        msg = (
            f"COHORTFLOW_PARTITIONS={deployment.partitions}, but this deployment was created"
            f" with {recorded} partitions (table {DEPLOYMENT_TABLE}); the number of partitions"
            " is fixed when a deployment is created"
        )
        raise DeploymentMismatch(msg)
    if explicit:
        mine = [_identity(url) for url in deployment.placement]
        if mine != databases:
            moved = [p for p, (a, b) in enumerate(zip(mine, databases, strict=True)) if a != b]
            msg = (
                f"COHORTFLOW_PLACEMENT puts partition {moved[0]} in {mine[moved[0]]}, but it was"
                f" created in {databases[moved[0]]} (table {DEPLOYMENT_TABLE})"
            )
            raise DeploymentMismatch(msg)
    return recorded


def load_deployment(home_url: str, partitions: int | None, placement: str) -> Deployment:
    """The deployment the home database records, checked against the settings.

    COHORTFLOW_PARTITIONS, when set, must equal the recorded number; when unset the
    recorded number applies (a database created before partitions existed has one).
    """
    with psycopg.connect(home_url, autocommit=True, connect_timeout=10) as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (DEPLOYMENT_TABLE,)).fetchone()
        recorded = None
        if exists and exists[0] is not None:
            row = conn.execute(f"SELECT partitions FROM {DEPLOYMENT_TABLE}").fetchone()
            recorded = int(row[0]) if row else None
        count = recorded if partitions is None and recorded is not None else partitions
        deployment = deployment_from_settings(home_url, count, placement)
        if recorded is not None:
            _check(conn, deployment, explicit=True)
        return deployment
