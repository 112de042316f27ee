"""Segment definition events for tests, as SegmentService writes them to the log."""

from __future__ import annotations

from typing import Any

from services.eventlog.segments import Segment


class Definitions:
    """Aggregates of one app's segments; each call returns the new log events."""

    def __init__(self, app: str = "app") -> None:
        self.app = app
        self.segments: dict[str, Segment] = {}

    def define(self, segment_id: str, condition: dict[str, Any]) -> list[object]:
        segment = Segment(
            app_id=self.app,
            segment_id=segment_id,
            display_name=segment_id,
            description="",
            definition=condition,
        )
        self.segments[segment_id] = segment
        return list(segment.collect_events())

    def redefine(
        self, segment_id: str, condition: dict[str, Any], *, silent: bool = False
    ) -> list[object]:
        segment = self.segments[segment_id]
        segment.redefine(segment_id, "", condition, silent)
        return list(segment.collect_events())

    def built(self, segment_id: str, through_position: int, users: int = 0) -> list[object]:
        segment = self.segments[segment_id]
        segment.built(segment.definition_version, through_position, users)
        return list(segment.collect_events())

    def archive(self, segment_id: str) -> list[object]:
        segment = self.segments[segment_id]
        segment.archive()
        return list(segment.collect_events())
