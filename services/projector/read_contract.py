"""The projector's read contract: SQL views other services may read, and nothing else of it.

Campaign (and anything else outside the projector) reads profiles and segment members only
through these views, never the tables behind them. Each view is versioned: `_v1` keeps its
columns, their names, types and meaning for as long as it exists; a change that cannot keep
them is a new `_v2` view beside it, and `_v1` goes only once no reader uses it. PostgreSQL
guards the promise too: a column a view uses cannot be dropped or retyped in its table.

A view follows its tables by identity, not by name, so whatever replaces the tables (a
rebuild's swap) must create the views again over the new ones (`STATEMENTS`, idempotent).
"""

from __future__ import annotations

from services.projector.schema import PROFILES_TABLE, SEGMENT_MEMBERS_TABLE

PROFILES_V1 = "contract_profiles_v1"
SEGMENT_MEMBERS_V1 = "contract_segment_members_v1"

STATEMENTS = [
    # One row per user of an app the projector knows: the contacts, consent, place, traits
    # and derived state a message may depend on.
    f"""
    CREATE OR REPLACE VIEW {PROFILES_V1} AS
    SELECT app_id, user_id, traits, email, phone, push_token, consents, timezone, country, city,
           lifecycle_state, rfm_group
    FROM {PROFILES_TABLE}
    """,
    # One row per member of a segment's live version.
    f"""
    CREATE OR REPLACE VIEW {SEGMENT_MEMBERS_V1} AS
    SELECT app_id, segment_id, user_id, version, since_us
    FROM {SEGMENT_MEMBERS_TABLE}
    """,
]
