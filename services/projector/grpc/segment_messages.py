"""SegmentService's answers built from read-model rows: segments, build progress, changes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cohortflow.changes.v1 import changes_pb2
from cohortflow.segments.v1 import segments_pb2
from google.protobuf import timestamp_pb2

from services.common.segment_wire import BuildStatus, condition_from_dict
from services.eventlog.segments import Segment
from services.projector.adapters.encode import CAUSES, DIRECTIONS, lateness_fields

_STATES = {
    "building": segments_pb2.Segment.STATE_BUILDING,
    "active": segments_pb2.Segment.STATE_ACTIVE,
    "archived": segments_pb2.Segment.STATE_ARCHIVED,
}


def segment_pb(row: dict[str, Any], version_row: dict[str, Any] | None) -> segments_pb2.Segment:
    segment = segments_pb2.Segment(
        segment_id=row["segment_id"],
        display_name=row["display_name"],
        description=row["description"],
        version=row["latest_version"],
        state=_STATES[row["state"]],
        active_version=row["active_version"],
        building_version=row["building_version"],
        size=row.get("size", 0),
        create_time=us_to_timestamp(row["created_us"]),
        update_time=us_to_timestamp(row["updated_us"]),
    )
    if version_row is not None:
        segment.version = version_row["version"]
        segment.display_name = version_row["display_name"]
        segment.description = version_row["description"]
        segment.condition.CopyFrom(condition_from_dict(version_row["definition"]))
        segment.defined_position = version_row["defined_position"]
    return segment


def written_pb(segment: Segment, position: int) -> segments_pb2.Segment:
    """A segment as a command just wrote it (its version builds first, unless it is the
    first: later versions keep the live one active while they build)."""
    return segments_pb2.Segment(
        segment_id=segment.segment_id,
        display_name=segment.display_name,
        description=segment.description,
        condition=condition_from_dict(segment.definition),
        version=segment.definition_version,
        state=segments_pb2.Segment.STATE_BUILDING
        if segment.definition_version == 1
        else segments_pb2.Segment.STATE_ACTIVE,
        building_version=segment.definition_version,
        defined_position=position,
    )


def archived_pb(segment: Segment) -> segments_pb2.Segment:
    return segments_pb2.Segment(
        segment_id=segment.segment_id,
        display_name=segment.display_name,
        description=segment.description,
        version=segment.definition_version,
        state=segments_pb2.Segment.STATE_ARCHIVED,
    )


def build_progress(
    segment: dict[str, Any],
    version: dict[str, Any],
    build: dict[str, Any] | None,
    now: int,
) -> segments_pb2.BuildProgress:
    """What the build of a version has done, and how long the rest should take."""
    progress = segments_pb2.BuildProgress(version=version["version"])
    if version["status"] in ("active", "retired"):
        progress.status = BuildStatus.LIVE
    elif version["status"] == "archived":
        progress.status = BuildStatus.ARCHIVED
    elif build is None:
        progress.status = BuildStatus.WAITING
    else:
        progress.status = BuildStatus(build["status"])
    if build is not None:
        progress.events_done = build["events_done"]
        progress.events_total = build["events_total"]
        progress.users = build["users"]
        progress.start_time.FromMicroseconds(build["started_us"])
        end = build["finished_us"] or now
        seconds = max((end - build["started_us"]) / 1e6, 1e-6)
        progress.events_per_second = build["events_done"] / seconds
        progress.error = build.get("error") or ""
        if build["finished_us"]:
            progress.finish_time.FromMicroseconds(build["finished_us"])
        elif progress.events_per_second > 0:
            left = (build["events_total"] - build["events_done"]) / progress.events_per_second
            progress.eta.FromMicroseconds(int(left * 1e6))
    return progress


def membership_changed(row: dict[str, Any]) -> changes_pb2.MembershipChanged:
    details = row["details"]
    return changes_pb2.MembershipChanged(
        header=changes_pb2.ChangeHeader(
            change_id=row["change_id"],
            app_id=row["app_id"],
            user_id=row["user_id"],
            user_sequence=row["sequence"],
            cause=changes_pb2.Cause(
                kind=CAUSES[row["cause"]],
                event_ids=row["event_ids"],
                event_name=row["event_name"],
            ),
            effective_time=us_to_timestamp(row["effective_us"]),
            position=row["position"],
            recorded_time=us_to_timestamp(row["recorded_us"]),
            correction=row["correction"],
            **lateness_fields(row["effective_us"], row["recorded_us"]),
        ),
        segment_id=details["segment_id"],
        segment_version=details["segment_version"],
        direction=DIRECTIONS[row["to_value"]],
    )


def us_to_timestamp(us: int | None) -> timestamp_pb2.Timestamp | None:
    if not us:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromMicroseconds(us)
    return ts


def now_us() -> int:
    return int(datetime.now(UTC).timestamp() * 1_000_000)
