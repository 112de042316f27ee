"""What every concern of the fold shares: policies, the recorded clock, users, segments.

One `FoldState` per engine. The concerns (identity, lifecycle, RFM, segment membership
and versions) each hold it and change it in place; what they change they note in its
`changes` (changeset.py), which the engine drains per batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from services.projector.domain.changeset import ChangeSet, UserKey
from services.projector.domain.policy import AppPolicy
from services.projector.domain.segments.live import AppSegments
from services.projector.domain.user import User

PolicySource = Callable[[str], AppPolicy]


def policy_source(policies: PolicySource | AppPolicy | None) -> PolicySource:
    """Per-app policies: as given, or one policy (default: the defaults) for every app."""
    if policies is None or isinstance(policies, AppPolicy):
        fixed = policies or AppPolicy()
        return lambda _app: fixed
    return policies


@dataclass(eq=False)
class FoldState:
    """The state every concern of one engine shares (they change it in place)."""

    policies: PolicySource
    changes: ChangeSet
    # The recorded clock: moved on only by ClockTicked events of the log.
    now_us: int = 0
    users: dict[UserKey, User] = field(default_factory=dict)
    segments: dict[str, AppSegments] = field(default_factory=dict)
    # Whether a user key (app, user id or "anonymous:<id>") belongs to this log (a
    # partition of it); a one-partition log holds everyone.
    local: Callable[[str, str], bool] = field(default=lambda _app, _key: True)

    def user(self, key: UserKey) -> User:
        """The user of `key` (new if unknown), noted as changed."""
        user = self.users.get(key)
        if user is None:
            user = self.users[key] = User(app_id=key[0], user_id=key[1])
        self.changes.users.add(key)
        return user

    def app_users(self, app_id: str) -> list[User]:
        """The users of an app, in key order."""
        return [u for key, u in sorted(self.users.items()) if key[0] == app_id]
