"""Live segment membership: versions, shared trackers, and evaluation as things change.

A version goes through: defined (its trackers are kept live from its
definition's position on) -> built (history up to that position, computed
set-based elsewhere, is merged in) -> active (membership evaluated for every
user, the difference to the previous version published) -> retired/archived.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from services.common.segments.definition import parse
from services.projector.domain.segments import trackers as tr
from services.projector.domain.segments.compile import (
    USES_FIRST_SEEN,
    USES_LIFECYCLE,
    USES_PROFILE,
    USES_RFM,
    Compiled,
    compile_segment,
)


@dataclass
class Pending:
    compiled: Compiled
    position: int
    silent: bool
    # Trackers that no live version kept before this one was defined: these need history.
    new_keys: frozenset[str]


@dataclass
class AppSegments:
    """The segments of one app and the indexes evaluation needs."""

    definitions: dict[str, dict[str, Any]] = field(default_factory=dict)
    active: dict[str, Compiled] = field(default_factory=dict)
    pending: dict[str, Pending] = field(default_factory=dict)
    # Derived, rebuilt by reindex():
    order: list[str] = field(default_factory=list)
    rank: dict[str, int] = field(default_factory=dict)  # segment -> index in order
    specs: dict[str, tr.TrackerSpec] = field(default_factory=dict)
    by_name: dict[str, list[tr.TrackerSpec]] = field(default_factory=dict)
    by_tracker: dict[str, set[str]] = field(default_factory=dict)
    by_use: dict[str, set[str]] = field(default_factory=dict)
    dependents: dict[str, set[str]] = field(default_factory=dict)
    timed: list[str] = field(default_factory=list)

    def reindex(self) -> None:
        self.specs = {}
        for compiled in [*self.active.values(), *(p.compiled for p in self.pending.values())]:
            self.specs.update(compiled.trackers)
        self.by_name = {}
        for spec in sorted(self.specs.values(), key=lambda s: s.key):
            for name in spec.names:
                self.by_name.setdefault(name, []).append(spec)
        self.by_tracker = {}
        self.by_use = {}
        self.dependents = {}
        for segment_id, compiled in self.active.items():
            for key in compiled.trackers:
                self.by_tracker.setdefault(key, set()).add(segment_id)
            for use in compiled.uses:
                self.by_use.setdefault(use, set()).add(segment_id)
            for ref in compiled.references:
                self.dependents.setdefault(ref, set()).add(segment_id)
        self.order = _topological(self.active)
        self.rank = {segment_id: index for index, segment_id in enumerate(self.order)}
        self.timed = [s for s in self.order if self.active[s].timed]

    def live_keys(self) -> set[str]:
        keys: set[str] = set()
        for compiled in [*self.active.values(), *(p.compiled for p in self.pending.values())]:
            keys.update(compiled.trackers)
        return keys

    def to_dict(self) -> dict[str, Any]:
        return {
            "definitions": self.definitions,
            "active": {s: c.version for s, c in self.active.items()},
            "pending": {
                s: [p.compiled.version, p.position, p.silent, sorted(p.new_keys)]
                for s, p in self.pending.items()
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AppSegments:
        """Recompile from stored definitions (keyed "segment_id@version")."""
        app = cls(definitions=data["definitions"])
        for segment_id, version in data["active"].items():
            app.active[segment_id] = _compile(app, segment_id, version)
        for segment_id, (version, position, silent, new_keys) in data["pending"].items():
            app.pending[segment_id] = Pending(
                _compile(app, segment_id, version), position, silent, frozenset(new_keys)
            )
        app.reindex()
        return app


def definition_key(segment_id: str, version: int) -> str:
    return f"{segment_id}@{version}"


def _compile(app: AppSegments, segment_id: str, version: int) -> Compiled:
    data = app.definitions[definition_key(segment_id, version)]
    return compile_segment(segment_id, version, parse(data))


def _topological(active: dict[str, Compiled]) -> list[str]:
    """Segments after those they refer to; a cycle (which the API refuses) is cut."""
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(segment_id: str) -> None:
        if state.get(segment_id) is not None:
            return
        state[segment_id] = 1
        for ref in sorted(active[segment_id].references):
            if ref in active and state.get(ref) is None:
                visit(ref)
        state[segment_id] = 2
        order.append(segment_id)

    for segment_id in sorted(active):
        visit(segment_id)
    return order


def observe_event(
    app: AppSegments,
    trackers: dict[str, Any],
    name: str,
    at: int,
    props: Any,
    times: Any,
    ctx: Any,
    now: int,
) -> set[str]:
    """Feed an event to the app's trackers of a user; the keys whose state changed."""
    touched: set[str] = set()
    for spec in app.by_name.get(name, ()):
        before = trackers.get(spec.key)
        after = tr.observe(spec, before, name, at, props, times, ctx, now)
        if after is not None:
            trackers[spec.key] = after
            touched.add(spec.key)
    return touched


def affected(
    app: AppSegments, touched: Iterable[str], uses: Iterable[str], everything: bool = False
) -> set[str]:
    if everything:
        return set(app.active)
    out: set[str] = set()
    for key in touched:
        out.update(app.by_tracker.get(key, ()))
    for use in uses:
        out.update(app.by_use.get(use, ()))
    return out


ALL_USES = (USES_LIFECYCLE, USES_RFM, USES_PROFILE, USES_FIRST_SEEN)
