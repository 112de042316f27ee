"""Segment commands: create, update, archive and restore, against the write model.

Each command loads the `Segment` aggregates it needs from the log, checks the draft and the
aggregate's rules, and saves the new events in one transaction; it answers with the
aggregate and the log position of what it wrote (the client's read-your-writes token).
Refusals are raised as `services.common.domain_errors` subclasses, so every edge reports
them alike. Synchronous, as eventsourcing is: async callers run commands in a thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from services.common.domain_errors import (
    AlreadyExists,
    FieldViolation,
    NotFound,
    PreconditionFailed,
)
from services.common.segments.definition import Definition
from services.eventlog.segments import Segment, SegmentArchivedError, segment_uuid
from services.eventlog.store import EventLog
from services.projector.service_layer.segment_checks import Draft, checked


class SegmentNotFound(NotFound):
    def __init__(self, segment_id: str, version: int = 0) -> None:
        super().__init__("segment", segment_id, version)


class SegmentExists(AlreadyExists):
    def __init__(self, segment_id: str) -> None:
        super().__init__(f"segment {segment_id!r} exists")


class VersionConflict(PreconditionFailed):
    """The segment is not at the version the client expected, or changed meanwhile."""

    reason = "VERSION_CONFLICT"


class SegmentArchived(PreconditionFailed):
    reason = "ARCHIVED"


@dataclass(frozen=True)
class Written:
    """A segment as a command left it, and the log position of its last event."""

    segment: Segment
    position: int


class SegmentCommands:
    """The segment definitions of every app, as commands on the aggregates in the log."""

    def __init__(self, log: EventLog) -> None:
        self._log = log

    def check(
        self, app_id: str, draft: Draft, problems: Sequence[FieldViolation] = ()
    ) -> Definition:
        """The draft's definition if it could be written now (InvalidDefinition if not)."""
        return checked(app_id, draft, self._live, problems)

    def create(self, app_id: str, draft: Draft, problems: Sequence[FieldViolation] = ()) -> Written:
        """A new segment at version 1; `problems` are the request's own, reported along."""
        self.check(app_id, draft, problems)
        segment = Segment(
            app_id=app_id,
            segment_id=draft.segment_id,
            display_name=draft.display_name or draft.segment_id,
            description=draft.description,
            definition=draft.condition,
        )
        try:
            return self._save(segment)
        except IntegrityError:
            raise SegmentExists(draft.segment_id) from None

    def update(
        self,
        app_id: str,
        draft: Draft,
        *,
        silent: bool = False,
        expected_version: int = 0,
        problems: Sequence[FieldViolation] = (),
    ) -> Written:
        """The next version of a segment (`expected_version`, if given, must be the latest);
        `silent` switches versions without publishing entries and exits."""
        self.check(app_id, draft, problems)
        segment = self._load(app_id, draft.segment_id)
        if expected_version and expected_version != segment.definition_version:
            msg = f"segment is at version {segment.definition_version}, not {expected_version}"
            raise VersionConflict(msg)
        try:
            segment.redefine(
                draft.display_name or segment.display_name,
                draft.description,
                draft.condition,
                silent,
            )
        except SegmentArchivedError as error:
            raise SegmentArchived(str(error)) from None
        return self._save_changed(segment)

    def restore(self, app_id: str, segment_id: str, version: int, *, silent: bool) -> Written:
        """A new version with the definition, name and description of an earlier one."""
        earlier = self._version(app_id, segment_id, version)
        draft = Draft(segment_id, earlier.display_name, earlier.description, earlier.definition)
        return self.update(app_id, draft, silent=silent)

    def archive(self, app_id: str, segment_id: str) -> Segment:
        """Stop the segment: no more changes of its membership; it cannot be redefined."""
        segment = self._load(app_id, segment_id)
        try:
            segment.archive()
        except SegmentArchivedError as error:
            raise SegmentArchived(str(error)) from None
        return self._save_changed(segment).segment

    def _load(self, app_id: str, segment_id: str) -> Segment:
        try:
            segment: Segment = self._log.repository.get(segment_uuid(app_id, segment_id))
        except AggregateNotFoundError:
            raise SegmentNotFound(segment_id) from None
        return segment

    def _live(self, app_id: str, segment_id: str) -> Segment | None:
        try:
            segment = self._load(app_id, segment_id)
        except SegmentNotFound:
            return None
        return None if segment.archived else segment

    def _version(
        self, app_id: str, segment_id: str, version: int
    ) -> Segment.Defined | Segment.Redefined:
        """The event that defined `version` of the segment."""
        for event in self._log.events.get(segment_uuid(app_id, segment_id)):
            if isinstance(event, Segment.Defined | Segment.Redefined) and (
                event.definition_version == version
            ):
                return event
        raise SegmentNotFound(segment_id, version)

    def _save(self, segment: Segment) -> Written:
        recordings = self._log.save(segment)
        return Written(segment, recordings[-1].notification.id)

    def _save_changed(self, segment: Segment) -> Written:
        """Save events of a loaded segment; someone else's save in between is a conflict."""
        try:
            return self._save(segment)
        except IntegrityError:
            raise VersionConflict("the segment changed meanwhile; retry") from None
