"""Segment definitions, event-sourced in the log (their module path is in stored topics).

Living in the same log as user events puts every definition change in one total
order with the events, so replaying the log replays redefinitions too.
"""

from __future__ import annotations

import uuid
from typing import Any

from eventsourcing.domain import Aggregate, event

SEGMENTS_NAMESPACE = uuid.UUID("3d1e8b6a-5f2c-4a7e-9c0d-8e1f2a3b4c5d")


def segment_uuid(app_id: str, segment_id: str) -> uuid.UUID:
    return uuid.uuid5(SEGMENTS_NAMESPACE, f"{app_id}\x1f{segment_id}")


class Segment(Aggregate):
    """A segment of an app's users: a definition with versions, built then live."""

    class Defined(Aggregate.Created):
        app_id: str
        segment_id: str
        display_name: str
        description: str
        definition: dict[str, Any]
        definition_version: int

    class Redefined(Aggregate.Event):
        app_id: str
        segment_id: str
        display_name: str
        description: str
        definition: dict[str, Any]
        definition_version: int
        silent: bool

    class Built(Aggregate.Event):
        """History up to `through_position` (the definition's) is computed and stored."""

        app_id: str
        segment_id: str
        definition_version: int
        through_position: int
        users: int

    class Archived(Aggregate.Event):
        app_id: str
        segment_id: str

    @staticmethod
    def create_id(app_id: str, segment_id: str, **_: Any) -> uuid.UUID:
        return segment_uuid(app_id, segment_id)

    @event(Defined)
    def __init__(
        self,
        app_id: str,
        segment_id: str,
        display_name: str,
        description: str,
        definition: dict[str, Any],
        definition_version: int = 1,
    ) -> None:
        self.app_id = app_id
        self.segment_id = segment_id
        self.display_name = display_name
        self.description = description
        self.definition = definition
        self.definition_version = definition_version
        self.built_version = 0
        self.archived = False

    def redefine(
        self, display_name: str, description: str, definition: dict[str, Any], silent: bool
    ) -> None:
        self.check_not_archived()
        self._redefine(
            self.app_id,
            self.segment_id,
            display_name,
            description,
            definition,
            self.definition_version + 1,
            silent,
        )

    @event(Redefined)
    def _redefine(
        self,
        app_id: str,
        segment_id: str,
        display_name: str,
        description: str,
        definition: dict[str, Any],
        definition_version: int,
        silent: bool,
    ) -> None:
        self.display_name = display_name
        self.description = description
        self.definition = definition
        self.definition_version = definition_version

    def built(self, definition_version: int, through_position: int, users: int) -> None:
        self._built(self.app_id, self.segment_id, definition_version, through_position, users)

    @event(Built)
    def _built(
        self,
        app_id: str,
        segment_id: str,
        definition_version: int,
        through_position: int,
        users: int,
    ) -> None:
        self.built_version = max(self.built_version, definition_version)

    def archive(self) -> None:
        self.check_not_archived()
        self._archive(self.app_id, self.segment_id)

    @event(Archived)
    def _archive(self, app_id: str, segment_id: str) -> None:
        self.archived = True

    def check_not_archived(self) -> None:
        if self.archived:
            msg = f"segment {self.segment_id!r} is archived"
            raise SegmentArchivedError(msg)


class SegmentArchivedError(Exception):
    pass
