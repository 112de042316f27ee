"""Tables of the campaign service. Created once by services.migrate.

Campaign definitions live in their own event store (table `campaigns_events`,
see `adapters/store.py`); these tables hold what campaigns did.
"""

from __future__ import annotations

DELIVERIES = "campaign_deliveries"
CHANGES_SEEN = "campaign_changes_seen"
INBOX = "campaign_inbox"
POISON = "campaign_poison_messages"
BROADCAST_RUNS = "campaign_broadcast_runs"
ERASURES_SWEPT = "campaign_erasures_swept"

STATEMENTS = [
    # Erasures (eventlog's cohortflow_erasures) whose inbox and delivery data are gone.
    f"""
    CREATE TABLE IF NOT EXISTS {ERASURES_SWEPT} (
        app_id text NOT NULL,
        request_id text NOT NULL,
        swept_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (app_id, request_id)
    )
    """,
    # One row per (campaign, user, triggering change): the delivery decision, then
    # its fate. send_id is the idempotency key of every provider call.
    f"""
    CREATE TABLE IF NOT EXISTS {DELIVERIES} (
        send_id text PRIMARY KEY,
        app_id text NOT NULL,
        campaign_id text NOT NULL,
        campaign_version bigint NOT NULL,
        user_id text NOT NULL,
        change_id text NOT NULL,
        trigger_sequence bigint NOT NULL DEFAULT 0,
        channel text NOT NULL,
        -- Variant name, "control" or "holdout".
        grp text NOT NULL,
        -- pending, sending, sent, failed, suppressed, cancelled, control, holdout.
        status text NOT NULL,
        reason text NOT NULL DEFAULT '',
        -- What must still hold when a pending send goes out (e.g. "segment:s1:in").
        condition text NOT NULL DEFAULT '',
        address text NOT NULL DEFAULT '',
        content jsonb,
        attempts integer NOT NULL DEFAULT 0,
        last_error text NOT NULL DEFAULT '',
        provider_id text NOT NULL DEFAULT '',
        decided_at timestamptz NOT NULL,
        due_at timestamptz NOT NULL,
        lease_until timestamptz,
        sent_at timestamptz,
        converted_at timestamptz,
        conversion_event_id text,
        UNIQUE (campaign_id, user_id, change_id)
    )
    """,
    f"CREATE INDEX IF NOT EXISTS {DELIVERIES}_due ON {DELIVERIES} (due_at)"
    " WHERE status IN ('pending', 'sending')",
    f"CREATE INDEX IF NOT EXISTS {DELIVERIES}_user ON {DELIVERIES} (app_id, user_id, decided_at)",
    f"CREATE INDEX IF NOT EXISTS {DELIVERIES}_campaign ON {DELIVERIES} (campaign_id, grp)",
    # A campaign's most recent deliveries (the console's campaign page).
    f"CREATE INDEX IF NOT EXISTS {DELIVERIES}_recent"
    f" ON {DELIVERIES} (app_id, campaign_id, decided_at DESC, send_id DESC)",
    # Change ids already acted on: a redelivered change is recognised and skipped.
    f"""
    CREATE TABLE IF NOT EXISTS {CHANGES_SEEN} (
        change_id text PRIMARY KEY,
        seen_at timestamptz NOT NULL
    )
    """,
    f"""
    CREATE TABLE IF NOT EXISTS {INBOX} (
        app_id text NOT NULL,
        user_id text NOT NULL,
        message_id text NOT NULL,
        campaign_id text NOT NULL,
        title text NOT NULL DEFAULT '',
        body text NOT NULL DEFAULT '',
        data jsonb NOT NULL DEFAULT '{{}}',
        created_at timestamptz NOT NULL,
        read_at timestamptz,
        PRIMARY KEY (app_id, user_id, message_id)
    )
    """,
    f"CREATE INDEX IF NOT EXISTS {INBOX}_recent ON {INBOX} (app_id, user_id, created_at DESC)",
    # Messages that could not be understood, kept for people to look at, then terminated.
    f"""
    CREATE TABLE IF NOT EXISTS {POISON} (
        stream_sequence bigint NOT NULL,
        subject text NOT NULL,
        headers jsonb NOT NULL,
        payload bytea NOT NULL,
        reason text NOT NULL,
        received_at timestamptz NOT NULL,
        PRIMARY KEY (stream_sequence, subject)
    )
    """,
    # One row per fired broadcast run: a run is decided once, even across restarts.
    f"""
    CREATE TABLE IF NOT EXISTS {BROADCAST_RUNS} (
        campaign_id text NOT NULL,
        fire_at timestamptz NOT NULL,
        app_id text NOT NULL,
        status text NOT NULL,
        members bigint NOT NULL DEFAULT 0,
        started_at timestamptz NOT NULL,
        finished_at timestamptz,
        PRIMARY KEY (campaign_id, fire_at)
    )
    """,
]
