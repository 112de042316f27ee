"""The console's own tables: its users, their app bindings and their sessions.

Created by services.migrate. Nothing else reads them.
"""

from __future__ import annotations

USERS_TABLE = "console_users"
BINDINGS_TABLE = "console_bindings"
SESSIONS_TABLE = "console_sessions"

STATEMENTS = [
    f"""
    CREATE TABLE IF NOT EXISTS {USERS_TABLE} (
        username text PRIMARY KEY,
        -- argon2id, in the PHC string format of argon2-cffi.
        password_hash text NOT NULL,
        created_us bigint NOT NULL
    )
    """,
    f"""
    CREATE TABLE IF NOT EXISTS {BINDINGS_TABLE} (
        username text NOT NULL REFERENCES {USERS_TABLE} ON DELETE CASCADE,
        app_id text NOT NULL,
        -- "viewer" reads; "editor" also defines segments and campaigns.
        role text NOT NULL CHECK (role IN ('viewer', 'editor')),
        PRIMARY KEY (username, app_id)
    )
    """,
    f"""
    CREATE TABLE IF NOT EXISTS {SESSIONS_TABLE} (
        -- SHA-256 of the cookie's token: a stolen table row is no session.
        token_hash bytea PRIMARY KEY,
        username text NOT NULL REFERENCES {USERS_TABLE} ON DELETE CASCADE,
        csrf_token text NOT NULL,
        expires_us bigint NOT NULL
    )
    """,
]
