"""Console users: argon2 password hashes, bindings to apps with a role, sessions.

Used by the web edge (sign-in, every request) and by `cohortflow console-user`.
Session tokens are kept only as SHA-256 digests; each session has its CSRF token.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from services.console.schema import BINDINGS_TABLE, SESSIONS_TABLE, USERS_TABLE

ROLES = ("viewer", "editor")
USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}")
APP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
_hasher = PasswordHasher()
# Verified against when the user does not exist, so both cases take as long.
_DUMMY_HASH = _hasher.hash("not a password of anyone")


class UserError(ValueError):
    """A bad username, password, app or role; the message names which."""


@dataclass(frozen=True)
class Session:
    username: str
    csrf_token: str
    # app_id -> role
    bindings: dict[str, str]

    def role(self, app_id: str) -> str | None:
        return self.bindings.get(app_id)


def _now_us() -> int:
    return int(time.time() * 1_000_000)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def check_username(username: str) -> str:
    if not USERNAME.fullmatch(username):
        msg = "username: 1 to 100 letters, digits or . _ @ + -, starting with a letter or digit"
        raise UserError(msg)
    return username


def check_password(password: str) -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD or "\x00" in password:
        msg = f"password: {MIN_PASSWORD} to {MAX_PASSWORD} characters, no NUL"
        raise UserError(msg)
    return password


def check_binding(app_id: str, role: str) -> None:
    if not APP_ID.fullmatch(app_id):
        raise UserError("app: 1 to 100 letters, digits or _ . -")
    if role not in ROLES:
        raise UserError(f"role: one of {', '.join(ROLES)}")


class ConsoleUsers:
    def __init__(self, pool: ConnectionPool[Any]) -> None:
        self._pool = pool

    @classmethod
    def open(cls, database_url: str, size: int = 4) -> ConsoleUsers:
        pool: ConnectionPool[Any] = ConnectionPool(
            database_url, min_size=1, max_size=size, kwargs={"row_factory": dict_row}, open=True
        )
        return cls(pool)

    def close(self) -> None:
        self._pool.close()

    # ---- management (the CLI) --------------------------------------------------------

    def add(self, username: str, password: str, bindings: dict[str, str]) -> None:
        """Create a user (UserError if it exists or anything is malformed)."""
        check_username(username)
        check_password(password)
        for app_id, role in bindings.items():
            check_binding(app_id, role)
        with self._pool.connection() as conn, conn.transaction():
            try:
                conn.execute(
                    f"INSERT INTO {USERS_TABLE} VALUES (%s, %s, %s)",
                    (username, _hasher.hash(password), _now_us()),
                )
            except psycopg.errors.UniqueViolation:
                raise UserError(f"username: {username!r} exists") from None
            for app_id, role in bindings.items():
                conn.execute(
                    f"INSERT INTO {BINDINGS_TABLE} VALUES (%s, %s, %s)", (username, app_id, role)
                )

    def set_password(self, username: str, password: str) -> None:
        check_password(password)
        with self._pool.connection() as conn:
            done = conn.execute(
                f"UPDATE {USERS_TABLE} SET password_hash = %s WHERE username = %s",
                (_hasher.hash(password), username),
            )
            if not done.rowcount:
                raise UserError(f"username: no user {username!r}")
            conn.execute(f"DELETE FROM {SESSIONS_TABLE} WHERE username = %s", (username,))

    def bind(self, username: str, app_id: str, role: str) -> None:
        check_binding(app_id, role)
        with self._pool.connection() as conn:
            try:
                conn.execute(
                    f"INSERT INTO {BINDINGS_TABLE} VALUES (%s, %s, %s)"
                    " ON CONFLICT (username, app_id) DO UPDATE SET role = excluded.role",
                    (username, app_id, role),
                )
            except psycopg.errors.ForeignKeyViolation:
                raise UserError(f"username: no user {username!r}") from None

    def unbind(self, username: str, app_id: str) -> bool:
        with self._pool.connection() as conn:
            done = conn.execute(
                f"DELETE FROM {BINDINGS_TABLE} WHERE username = %s AND app_id = %s",
                (username, app_id),
            )
            return bool(done.rowcount)

    def remove(self, username: str) -> bool:
        with self._pool.connection() as conn:
            return bool(
                conn.execute(f"DELETE FROM {USERS_TABLE} WHERE username = %s", (username,)).rowcount
            )

    def exists(self, username: str) -> bool:
        with self._pool.connection() as conn:
            row = conn.execute(
                f"SELECT 1 FROM {USERS_TABLE} WHERE username = %s", (username,)
            ).fetchone()
            return row is not None

    def list(self) -> list[tuple[str, dict[str, str]]]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                f"SELECT u.username, b.app_id, b.role FROM {USERS_TABLE} u"
                f" LEFT JOIN {BINDINGS_TABLE} b USING (username) ORDER BY 1, 2"
            ).fetchall()
        out: dict[str, dict[str, str]] = {}
        for row in rows:
            apps = out.setdefault(row["username"], {})
            if row["app_id"]:
                apps[row["app_id"]] = row["role"]
        return list(out.items())

    # ---- sign-in (the web edge) ------------------------------------------------------

    def verify(self, username: str, password: str) -> bool:
        """True if the password is the user's; as slow for unknown users."""
        with self._pool.connection() as conn:
            row = conn.execute(
                f"SELECT password_hash FROM {USERS_TABLE} WHERE username = %s", (username,)
            ).fetchone()
        stored = row["password_hash"] if row else _DUMMY_HASH
        ok: bool
        try:
            ok = _hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
        if ok and row and _hasher.check_needs_rehash(stored):
            self.set_password(username, password)
        return ok and row is not None

    def start_session(self, username: str, hours: float) -> str:
        """A new session's token (for the cookie)."""
        token = secrets.token_urlsafe(32)
        with self._pool.connection() as conn:
            conn.execute(f"DELETE FROM {SESSIONS_TABLE} WHERE expires_us < %s", (_now_us(),))
            conn.execute(
                f"INSERT INTO {SESSIONS_TABLE} VALUES (%s, %s, %s, %s)",
                (
                    _digest(token),
                    username,
                    secrets.token_urlsafe(32),
                    _now_us() + int(hours * 3.6e9),
                ),
            )
        return token

    def session(self, token: str) -> Session | None:
        with self._pool.connection() as conn:
            rows = conn.execute(
                f"SELECT s.username, s.csrf_token, b.app_id, b.role FROM {SESSIONS_TABLE} s"
                f" LEFT JOIN {BINDINGS_TABLE} b USING (username)"
                " WHERE s.token_hash = %s AND s.expires_us > %s",
                (_digest(token), _now_us()),
            ).fetchall()
        if not rows:
            return None
        bindings = {r["app_id"]: r["role"] for r in rows if r["app_id"]}
        return Session(rows[0]["username"], rows[0]["csrf_token"], bindings)

    def end_session(self, token: str) -> None:
        with self._pool.connection() as conn:
            conn.execute(f"DELETE FROM {SESSIONS_TABLE} WHERE token_hash = %s", (_digest(token),))
