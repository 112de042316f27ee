"""Segment versions in the fold: defined, built, switched on, retired or archived.

A version is defined by Segment.Defined/Redefined: from that position on, the trackers
it needs that no live version kept are kept live. Segment.Built says its build (the
same trackers' states as of the definition, computed from history) is ready: the caller
loads it (`wanted` says what to load) and hands it to `merge`, which joins it to what was
tracked live since, switches the version on and publishes who entered and left.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from services.common.segments.definition import parse
from services.eventlog.segments import Segment
from services.projector.domain.changes import REDEFINITION
from services.projector.domain.changeset import (
    ConsumedBuild,
    SegmentActivated,
    SegmentArchived,
    SegmentDefined,
)
from services.projector.domain.fold_state import FoldState
from services.projector.domain.identity import Identity
from services.projector.domain.segments import live
from services.projector.domain.segments import trackers as tr
from services.projector.domain.segments.compile import Compiled, compile_segment
from services.projector.domain.segments.membership import Membership

# A build: per stored user id, tracker key -> state as of the definition's position.
BuildHistory = dict[str, dict[str, Any]]


class Built(Protocol):
    """A version's build is stored: Segment.Built, or one partition's share of it."""

    @property
    def app_id(self) -> str: ...
    @property
    def segment_id(self) -> str: ...
    @property
    def definition_version(self) -> int: ...


@dataclass(frozen=True)
class BuildRequest:
    """The build a Segment.Built stands for: the states of `specs` (the trackers the
    version needs that were not kept before it) over the app's log through
    `through_position` (its definition)."""

    app_id: str
    segment_id: str
    version: int
    through_position: int
    specs: tuple[tr.TrackerSpec, ...]


class Versions:
    """Segment versions through the fold: define, merge a build and activate, archive."""

    def __init__(self, state: FoldState, identity: Identity, segments: Membership) -> None:
        self._state = state
        self._identity = identity
        self._segments = segments

    def define(self, event: Segment.Defined | Segment.Redefined, position: int) -> None:
        app_id, segment_id = event.app_id, event.segment_id
        segments = self._state.segments.setdefault(app_id, live.AppSegments())
        version = event.definition_version
        segments.definitions[live.definition_key(segment_id, version)] = event.definition
        compiled = compile_segment(segment_id, version, parse(event.definition))
        already = segments.live_keys()
        silent = bool(getattr(event, "silent", False))
        segments.pending[segment_id] = live.Pending(
            compiled,
            position,
            silent,
            frozenset(k for k in compiled.trackers if k not in already),
        )
        segments.reindex()
        self._state.changes.segments.add(app_id)
        self._state.changes.segment_record(
            SegmentDefined(
                app_id,
                segment_id,
                version,
                position,
                self._state.now_us,
                event.display_name,
                event.description,
                event.definition,
                silent,
            )
        )

    def wanted(self, event: Built) -> BuildRequest | None:
        """The build to load for `event`; None if the version is superseded or archived."""
        app_id, segment_id = event.app_id, event.segment_id
        pending = self._pending(app_id, segment_id, event.definition_version)
        if pending is None:
            return None
        return BuildRequest(
            app_id,
            segment_id,
            pending.compiled.version,
            pending.position,
            tuple(pending.compiled.trackers[k] for k in sorted(pending.new_keys)),
        )

    def merge(self, event: Built, position: int, history: BuildHistory) -> None:
        """Join the build `history` (as `wanted` asked for it) to what was tracked live
        since the definition, and switch the version on."""
        app_id, segment_id = event.app_id, event.segment_id
        pending = self._pending(app_id, segment_id, event.definition_version)
        if pending is None:
            return  # superseded by a newer definition, or archived
        segments = self._state.segments[app_id]
        spec_of = {k: pending.compiled.trackers[k] for k in pending.new_keys}
        users = self._state.users
        for user_id in sorted(history):
            user = users.get(self._identity.key_of_stored(app_id, user_id))
            if user is None:
                continue
            for tracker_key, state in history[user_id].items():
                spec = spec_of.get(tracker_key)
                if spec is not None:
                    user.trackers[tracker_key] = tr.merge(
                        spec, state, user.trackers.get(tracker_key)
                    )
            self._state.changes.users.add(user.key)
        self._state.changes.consumed_build(
            ConsumedBuild(app_id, segment_id, pending.compiled.version)
        )
        self._activate(app_id, segments, segment_id, position)

    def archive(self, event: Segment.Archived, position: int) -> None:
        app_id = event.app_id
        segment_id = event.segment_id
        segments = self._state.segments.get(app_id)
        if segments is None:
            return
        segments.pending.pop(segment_id, None)
        previous = segments.active.pop(segment_id, None)
        dependents = segments.dependents.get(segment_id, set())
        self._retire_unused_trackers(app_id, segments, previous)
        segments.reindex()
        at = self._state.now_us
        self._state.changes.segments.add(app_id)
        self._state.changes.segment_record(SegmentArchived(app_id, segment_id, position, at))
        for user in self._state.app_users(app_id):
            membership = user.memberships.get(segment_id)
            if membership is not None:
                self._segments.set_membership(
                    user, segment_id, membership[0], False, at, position, REDEFINITION, None
                )
                if dependents:
                    self._segments.reevaluate(
                        user, set(dependents), at, position, cause=REDEFINITION
                    )
            if user.left.pop(segment_id, None) is not None:
                self._state.changes.users.add(user.key)

    def _pending(self, app_id: str, segment_id: str, version: int) -> live.Pending | None:
        segments = self._state.segments.get(app_id)
        pending = segments.pending.get(segment_id) if segments is not None else None
        if pending is None or pending.compiled.version != version:
            return None
        return pending

    def _activate(
        self, app_id: str, segments: live.AppSegments, segment_id: str, position: int
    ) -> None:
        pending = segments.pending.pop(segment_id)
        compiled = pending.compiled
        previous = segments.active.get(segment_id)
        segments.active[segment_id] = compiled
        self._retire_unused_trackers(app_id, segments, previous)
        segments.reindex()
        at = self._state.now_us
        self._state.changes.segments.add(app_id)
        self._state.changes.segment_record(
            SegmentActivated(app_id, segment_id, compiled.version, position, at)
        )
        dependents = segments.dependents.get(segment_id, set())
        for user in self._state.app_users(app_id):
            for tracker_key in pending.new_keys:
                state = user.trackers.get(tracker_key)
                if state is not None:
                    pruned = tr.prune(compiled.trackers[tracker_key], state, at)
                    if pruned is None:
                        del user.trackers[tracker_key]
            inside = compiled.member(user, at)
            was = segment_id in user.memberships
            if inside and was:
                user.memberships[segment_id][0] = compiled.version
                self._state.changes.users.add(user.key)
            elif inside != was:
                self._segments.set_membership(
                    user,
                    segment_id,
                    compiled.version,
                    inside,
                    at,
                    position,
                    REDEFINITION,
                    None,
                    publish=not pending.silent,
                )
                if dependents:
                    self._segments.reevaluate(
                        user, set(dependents), at, position, cause=REDEFINITION
                    )
            if compiled.timed:
                self._segments.arm(user, segment_id, compiled, at)

    def _retire_unused_trackers(
        self, app_id: str, segments: live.AppSegments, previous: Compiled | None
    ) -> None:
        if previous is None:
            return
        still = segments.live_keys()
        gone = [k for k in previous.trackers if k not in still]
        if not gone:
            return
        for user in self._state.app_users(app_id):
            dropped = False
            for tracker_key in gone:
                if user.trackers.pop(tracker_key, None) is not None:
                    dropped = True
            if dropped:
                self._state.changes.users.add(user.key)
