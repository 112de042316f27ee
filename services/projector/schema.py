"""Tables of the projector's read models. Created once by services.migrate.

They are the projector's own: other services read the views of `read_contract` instead.
"""

from __future__ import annotations

from services.projector.partitions.mail import CREATE_STATEMENTS as MAIL_STATEMENTS

PROFILES_TABLE = "projector_profiles"
CHANGES_TABLE = "projector_changes"
OUTBOX_TABLE = "projector_outbox"
APPS_TABLE = "projector_apps"
ALIASES_TABLE = "projector_aliases"
META_TABLE = "projector_meta"
TRACKING_TABLE = "projector_tracking"
FACTS_TABLE = "projector_facts"
SEGMENTS_STATE_TABLE = "projector_segments_state"
SEGMENTS_TABLE = "segments"
SEGMENT_VERSIONS_TABLE = "segment_versions"
SEGMENT_MEMBERS_TABLE = "segment_members"
SEGMENT_BUILDS_TABLE = "segment_builds"
SEGMENT_BUILD_PROGRESS_TABLE = "segment_build_progress"
QUARANTINE_TABLE = "projector_quarantine"
# Partition 0 of a partitioned deployment: the positions of the app-wide facts it relayed.
RELAYED_TABLE = "projector_relayed"
# Partitioned deployments: each purchaser's current RFM values (the cut points' input).
RFM_VALUES_TABLE = "projector_rfm_values"

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
        first_seen timestamptz,
        last_seen timestamptz,
        event_count bigint NOT NULL DEFAULT 0,
        active_days bigint NOT NULL DEFAULT 0,
        first_seen_us bigint,
        -- Where geo conditions place the user: profile location, else their last event's.
        geo_country text NOT NULL DEFAULT '',
        geo_city text NOT NULL DEFAULT '',
        geo_latitude double precision,
        geo_longitude double precision,
        -- The projector's own state of this user (opaque to everyone else; it also
        -- holds the RFM scores and per-event-name counts ProfileService shows).
        state bytea,
        PRIMARY KEY (app_id, user_id)
    )
    """,
    f"CREATE INDEX IF NOT EXISTS {PROFILES_TABLE}_lifecycle"
    f" ON {PROFILES_TABLE} (app_id, lifecycle_state)",
    # Every change the projector made, per user in order: timelines and as-of queries.
    f"""
    CREATE TABLE IF NOT EXISTS {CHANGES_TABLE} (
        -- Commit order (one projector writes): the cursor of WatchMembershipChanges.
        id bigserial NOT NULL,
        app_id text NOT NULL,
        user_id text NOT NULL,
        sequence bigint NOT NULL,
        change_id text NOT NULL,
        kind text NOT NULL,
        from_value text NOT NULL,
        to_value text NOT NULL,
        cause text NOT NULL,
        event_ids text[] NOT NULL DEFAULT '{{}}',
        event_name text NOT NULL DEFAULT '',
        -- Times in microseconds since the Unix epoch (UTC).
        effective_us bigint NOT NULL,
        recorded_us bigint NOT NULL,
        position bigint NOT NULL,
        correction boolean NOT NULL DEFAULT false,
        corrected_since_us bigint,
        details jsonb NOT NULL DEFAULT '{{}}',
        PRIMARY KEY (app_id, user_id, sequence)
    )
    """,
    f"CREATE UNIQUE INDEX IF NOT EXISTS {CHANGES_TABLE}_id ON {CHANGES_TABLE} (id)",
    f"CREATE INDEX IF NOT EXISTS {CHANGES_TABLE}_position ON {CHANGES_TABLE} (app_id, position)",
    f"CREATE INDEX IF NOT EXISTS {CHANGES_TABLE}_asof"
    f" ON {CHANGES_TABLE} (app_id, kind, user_id, effective_us)",
    # Changes waiting to be published on JetStream, in commit order.
    f"""
    CREATE TABLE IF NOT EXISTS {OUTBOX_TABLE} (
        id bigserial PRIMARY KEY,
        subject text NOT NULL,
        msg_id text NOT NULL,
        msg_type text NOT NULL,
        payload bytea NOT NULL
    )
    """,
    # When each change was committed (its transaction's start): the outbox's age metric.
    f"ALTER TABLE {OUTBOX_TABLE}"
    " ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now()",
    f"""
    CREATE TABLE IF NOT EXISTS {APPS_TABLE} (
        app_id text PRIMARY KEY,
        state jsonb NOT NULL
    )
    """,
    f"""
    CREATE TABLE IF NOT EXISTS {ALIASES_TABLE} (
        app_id text NOT NULL,
        anonymous_id text NOT NULL,
        user_id text NOT NULL,
        PRIMARY KEY (app_id, anonymous_id)
    )
    """,
    f"""
    CREATE TABLE IF NOT EXISTS {META_TABLE} (
        name text PRIMARY KEY,
        value bigint NOT NULL
    )
    """,
    # Facts: every user event, narrow, for set-based history queries (segment builds,
    # previews). Clock ticks are facts of app "" named "$tick". Written with each batch.
    f"""
    CREATE TABLE IF NOT EXISTS {FACTS_TABLE} (
        app_id text NOT NULL,
        user_id text NOT NULL,
        name text NOT NULL,
        event_time_us bigint NOT NULL,
        position bigint NOT NULL,
        props jsonb NOT NULL
    )
    """,
    f"CREATE INDEX IF NOT EXISTS {FACTS_TABLE}_name ON {FACTS_TABLE} (app_id, name, event_time_us)",
    f"CREATE INDEX IF NOT EXISTS {FACTS_TABLE}_user ON {FACTS_TABLE} (app_id, user_id)",
    f"""
    CREATE TABLE IF NOT EXISTS {SEGMENTS_STATE_TABLE} (
        app_id text PRIMARY KEY,
        state jsonb NOT NULL
    )
    """,
    f"""
    CREATE TABLE IF NOT EXISTS {SEGMENTS_TABLE} (
        app_id text NOT NULL,
        segment_id text NOT NULL,
        display_name text NOT NULL,
        description text NOT NULL,
        latest_version bigint NOT NULL,
        active_version bigint NOT NULL DEFAULT 0,
        building_version bigint NOT NULL DEFAULT 0,
        -- "building", "active" or "archived".
        state text NOT NULL,
        created_us bigint NOT NULL,
        updated_us bigint NOT NULL,
        PRIMARY KEY (app_id, segment_id)
    )
    """,
    f"""
    CREATE TABLE IF NOT EXISTS {SEGMENT_VERSIONS_TABLE} (
        app_id text NOT NULL,
        segment_id text NOT NULL,
        version bigint NOT NULL,
        display_name text NOT NULL,
        description text NOT NULL,
        definition jsonb NOT NULL,
        silent boolean NOT NULL DEFAULT false,
        defined_position bigint NOT NULL,
        defined_us bigint NOT NULL,
        -- "building", "active", "retired" or "archived".
        status text NOT NULL,
        activated_position bigint,
        activated_us bigint,
        PRIMARY KEY (app_id, segment_id, version)
    )
    """,
    f"""
    CREATE TABLE IF NOT EXISTS {SEGMENT_MEMBERS_TABLE} (
        app_id text NOT NULL,
        segment_id text NOT NULL,
        user_id text NOT NULL,
        version bigint NOT NULL,
        since_us bigint NOT NULL,
        PRIMARY KEY (app_id, segment_id, user_id)
    )
    """,
    f"CREATE INDEX IF NOT EXISTS {SEGMENT_MEMBERS_TABLE}_user"
    f" ON {SEGMENT_MEMBERS_TABLE} (app_id, user_id)",
    # Tracker states a build computed from history, until the projector merges them in.
    f"""
    CREATE TABLE IF NOT EXISTS {SEGMENT_BUILDS_TABLE} (
        app_id text NOT NULL,
        segment_id text NOT NULL,
        version bigint NOT NULL,
        user_id text NOT NULL,
        states jsonb NOT NULL,
        PRIMARY KEY (app_id, segment_id, version, user_id)
    )
    """,
    f"""
    CREATE TABLE IF NOT EXISTS {SEGMENT_BUILD_PROGRESS_TABLE} (
        app_id text NOT NULL,
        segment_id text NOT NULL,
        version bigint NOT NULL,
        -- "running", "stored" (rows written, Built appended) or "failed".
        status text NOT NULL,
        events_done bigint NOT NULL DEFAULT 0,
        events_total bigint NOT NULL DEFAULT 0,
        users bigint NOT NULL DEFAULT 0,
        through_position bigint NOT NULL,
        started_us bigint NOT NULL,
        finished_us bigint,
        error text NOT NULL DEFAULT '',
        PRIMARY KEY (app_id, segment_id, version)
    )
    """,
    # Log events the projector isolated and skipped (see adapters/quarantine.py), written in
    # the transaction that moves the tracked position past them.
    f"""
    CREATE TABLE IF NOT EXISTS {QUARANTINE_TABLE} (
        position bigint PRIMARY KEY,
        -- "" for events of no app (clock ticks) or that could not be decoded.
        app_id text NOT NULL,
        -- "track", "identify", "segment", "tick" or "unknown".
        kind text NOT NULL,
        event_id text NOT NULL DEFAULT '',
        user_id text NOT NULL DEFAULT '',
        anonymous_id text NOT NULL DEFAULT '',
        event_name text NOT NULL DEFAULT '',
        segment_id text NOT NULL DEFAULT '',
        event_time_us bigint,
        -- "unstorable_value", "refused_by_database", "fold_failed" or "undecodable".
        reason text NOT NULL,
        detail text NOT NULL,
        quarantined_us bigint NOT NULL
    )
    """,
    f"CREATE INDEX IF NOT EXISTS {QUARANTINE_TABLE}_app ON {QUARANTINE_TABLE} (app_id, position)",
]


def _partition_column(table: str) -> str:
    return f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS partition integer NOT NULL DEFAULT 0"


def _primary_key(table: str, columns: str) -> str:
    """Make `columns` (which start with partition) the primary key, once."""
    return f"""
    DO $$ BEGIN
        IF NOT EXISTS (
            SELECT 1 FROM pg_index i JOIN pg_attribute a
              ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
            WHERE i.indrelid = '{table}'::regclass AND i.indisprimary
              AND a.attname = 'partition'
        ) THEN
            ALTER TABLE {table} DROP CONSTRAINT {table}_pkey, ADD PRIMARY KEY ({columns});
        END IF;
    END $$
    """


# Each read model's rows belong to the partition whose fold writes them (column
# `partition`, 0 in a one-partition deployment): a partition's worker loads and writes only
# its own. Rows of users need no more (a user lives in one partition); what every partition
# keeps for itself (its RFM and segment states per app, aliases, its recorded clock, its
# builds) is keyed by partition too. Facts, changes and quarantined events carry positions
# that name their partition (partition << 48 | notification id). Idempotent: it also
# upgrades tables created before partitions existed.
STATEMENTS += [
    *(
        _partition_column(table)
        for table in (
            PROFILES_TABLE,
            CHANGES_TABLE,
            OUTBOX_TABLE,
            APPS_TABLE,
            ALIASES_TABLE,
            META_TABLE,
            SEGMENTS_STATE_TABLE,
            SEGMENT_BUILDS_TABLE,
            SEGMENT_BUILD_PROGRESS_TABLE,
        )
    ),
    f"CREATE INDEX IF NOT EXISTS {PROFILES_TABLE}_partition ON {PROFILES_TABLE} (partition)",
    f"CREATE INDEX IF NOT EXISTS {CHANGES_TABLE}_partition ON {CHANGES_TABLE} (partition, id)",
    f"CREATE INDEX IF NOT EXISTS {OUTBOX_TABLE}_partition ON {OUTBOX_TABLE} (partition, id)",
    _primary_key(APPS_TABLE, "partition, app_id"),
    _primary_key(ALIASES_TABLE, "partition, app_id, anonymous_id"),
    _primary_key(META_TABLE, "partition, name"),
    _primary_key(SEGMENTS_STATE_TABLE, "partition, app_id"),
    _primary_key(SEGMENT_BUILDS_TABLE, "partition, app_id, segment_id, version, user_id"),
    _primary_key(SEGMENT_BUILD_PROGRESS_TABLE, "partition, app_id, segment_id, version"),
    # The partition's fold queues each version it must build ("waiting", with its definition
    # and its position in the partition); a newer version or an archive ends the wait
    # ("superseded", "archived").
    f"ALTER TABLE {SEGMENT_BUILD_PROGRESS_TABLE} ADD COLUMN IF NOT EXISTS definition jsonb",
    f"CREATE TABLE IF NOT EXISTS {RELAYED_TABLE} (position bigint PRIMARY KEY)",
    f"""
    CREATE TABLE IF NOT EXISTS {RFM_VALUES_TABLE} (
        app_id text NOT NULL,
        user_id text NOT NULL,
        partition integer NOT NULL,
        last_purchase_us bigint NOT NULL,
        purchases double precision NOT NULL,
        amount double precision NOT NULL,
        PRIMARY KEY (app_id, user_id)
    )
    """,
    *MAIL_STATEMENTS,
]
