"""Tables of the projector's read models. Created once by services.migrate.

`projector_profiles` is also read by other services (campaign reads contacts,
consent, time zone and traits): its columns below are a contract.
"""

from __future__ import annotations

PROFILES_TABLE = "projector_profiles"

STATEMENTS = [
    f"""
    CREATE TABLE IF NOT EXISTS {PROFILES_TABLE} (
        app_id text NOT NULL,
        user_id text NOT NULL,
        -- Plain traits (JSON-native) and timestamp traits (microseconds since epoch).
        traits jsonb NOT NULL DEFAULT '{{}}',
        time_traits jsonb NOT NULL DEFAULT '{{}}',
        email text NOT NULL DEFAULT '',
        phone text NOT NULL DEFAULT '',
        push_token text NOT NULL DEFAULT '',
        -- Channel name ("email", "sms", "push", "in_app", "webhook") -> granted.
        consents jsonb NOT NULL DEFAULT '{{}}',
        timezone text NOT NULL DEFAULT '',
        country text NOT NULL DEFAULT '',
        city text NOT NULL DEFAULT '',
        latitude double precision,
        longitude double precision,
        -- "" (none), "new", "active", "loyal", "dormant", "churned", "reactivated".
        lifecycle_state text NOT NULL DEFAULT '',
        lifecycle_since timestamptz,
        usual_interval_days double precision NOT NULL DEFAULT 0,
        -- "" (none) or an RFM group name like "champions", "at_risk".
        rfm_group text NOT NULL DEFAULT '',
        rfm_scores jsonb NOT NULL DEFAULT '{{}}',
        first_seen timestamptz,
        last_seen timestamptz,
        event_count bigint NOT NULL DEFAULT 0,
        event_counts jsonb NOT NULL DEFAULT '{{}}',
        active_days bigint NOT NULL DEFAULT 0,
        -- The projector's own state of this user (opaque to everyone else).
        state bytea,
        PRIMARY KEY (app_id, user_id)
    )
    """,
    f"CREATE INDEX IF NOT EXISTS {PROFILES_TABLE}_lifecycle"
    f" ON {PROFILES_TABLE} (app_id, lifecycle_state)",
]
