"""Why a service layer refuses a command, in the client's terms and free of any transport.

Each kind of refusal has one gRPC status, assigned in one table
(`services.common.grpc.errors.status_of`); a service raises a subclass (`SegmentNotFound`,
`VersionConflict`, ...) and its servicer lets it go: the request guard answers with that
status. Anything else that escapes a handler is a failure, not a refusal.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """A bad field of a request, named by its path as the client wrote it."""

    field: str
    description: str


class Refused(Exception):
    """A command the service will not carry out, with a stable machine-readable `reason`."""

    reason = "REFUSED"

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        if reason:
            self.reason = reason


class InvalidInput(Refused):
    """The request itself is wrong: every bad field is named."""

    reason = "INVALID_ARGUMENT"

    def __init__(self, problems: Iterable[FieldViolation]) -> None:
        self.problems = list(problems)
        first = self.problems[0] if self.problems else None
        super().__init__(f"{first.field}: {first.description}" if first else "invalid request")


class NotFound(Refused):
    """No `kind` (e.g. "segment") named `name` in the caller's app, or not at `version`."""

    def __init__(self, kind: str, name: str, version: int = 0) -> None:
        self.kind, self.name, self.version = kind, name, version
        shown = f"{kind} {name!r} has no version {version}" if version else f"no {kind} {name!r}"
        super().__init__(shown, f"{kind.upper()}_{'VERSION_' if version else ''}NOT_FOUND")


class AlreadyExists(Refused):
    """What the command would create is there already."""

    reason = "ALREADY_EXISTS"


class PreconditionFailed(Refused):
    """The resource is not in a state that allows the command (archived, changed meanwhile)."""

    reason = "FAILED_PRECONDITION"
