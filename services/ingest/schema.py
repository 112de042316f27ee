"""Ingest's own table (home database): which user an anonymous id turned out to be.

Only a partitioned deployment needs it: an event that names only an anonymous id is
routed to the partition of the user that id was linked to by an Identify, so a user's
events keep going to one partition after the anonymous history was handed over.
"""

from __future__ import annotations

IDENTITY_LINKS_TABLE = "ingest_identity_links"

STATEMENTS = [
    f"""
    CREATE TABLE IF NOT EXISTS {IDENTITY_LINKS_TABLE} (
        app_id text NOT NULL,
        anonymous_id text NOT NULL,
        user_id text NOT NULL,
        linked_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (app_id, anonymous_id)
    )
    """,
]
