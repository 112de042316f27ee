"""Changes as cohortflow.changes.v1 protobuf messages, with their subject and type."""

from __future__ import annotations

from typing import Any

from cohortflow.changes.v1 import changes_pb2
from cohortflow.types.v1 import types_pb2
from google.protobuf import duration_pb2, timestamp_pb2

from services.common.jetstream import ChangeSubjects
from services.common.vocabulary_wire import LIFECYCLE_STATE_PB, RFM_GROUP_PB
from services.projector.domain import changes as kinds
from services.projector.domain.changes import Change

CAUSES = {
    kinds.EVENT: changes_pb2.Cause.KIND_EVENT,
    kinds.TIME: changes_pb2.Cause.KIND_TIME,
    kinds.LATE_EVENT: changes_pb2.Cause.KIND_LATE_EVENT,
    kinds.REDEFINITION: changes_pb2.Cause.KIND_REDEFINITION,
    kinds.RECOMPUTATION: changes_pb2.Cause.KIND_RECOMPUTATION,
    kinds.ERASURE: changes_pb2.Cause.KIND_ERASURE,
}
DIRECTIONS = {
    "entered": changes_pb2.MembershipChanged.DIRECTION_ENTERED,
    "exited": changes_pb2.MembershipChanged.DIRECTION_EXITED,
}


def timestamp(us: int) -> timestamp_pb2.Timestamp:
    seconds, micros = divmod(us, 1_000_000)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=micros * 1000)


def scores_pb(change: Change) -> types_pb2.RfmScores | None:
    if change.scores is None:
        return None
    r, f, m = change.scores
    return types_pb2.RfmScores(
        recency=r,
        frequency=f,
        monetary=m,
        recency_days=change.recency_days,
        purchases=change.purchases,
        monetary_value=change.amount,
    )


def header(change: Change) -> changes_pb2.ChangeHeader:
    cause = changes_pb2.Cause(
        kind=CAUSES[change.cause],
        event_ids=list(change.event_ids),
        event_name=change.event_name,
    )
    if change.deadline_us is not None:
        cause.deadline_time.CopyFrom(timestamp(change.deadline_us))
    return changes_pb2.ChangeHeader(
        change_id=change.change_id,
        app_id=change.app_id,
        user_id=change.user_id,
        user_sequence=change.sequence,
        cause=cause,
        effective_time=timestamp(change.effective_us),
        position=change.position,
        recorded_time=timestamp(change.recorded_us),
        correction=change.correction,
        imported=change.imported,
        **lateness_fields(change.effective_us, change.recorded_us),
    )


def lateness_fields(effective_us: int, recorded_us: int) -> dict[str, Any]:
    """ChangeHeader.historical and .lateness of a change (from the stream or a stored row)."""
    seconds, micros = divmod(kinds.lateness_us(effective_us, recorded_us), 1_000_000)
    return {
        "historical": kinds.historical(effective_us, recorded_us),
        "lateness": duration_pb2.Duration(seconds=seconds, nanos=micros * 1000),
    }


def encode(change: Change, subjects: ChangeSubjects) -> tuple[str, str, bytes]:
    """(subject, message type, serialized message) of a change."""
    message: (
        changes_pb2.LifecycleChanged | changes_pb2.RfmGroupChanged | changes_pb2.MembershipChanged
    )
    if change.kind == kinds.LIFECYCLE:
        message = changes_pb2.LifecycleChanged(
            header=header(change),
            from_state=LIFECYCLE_STATE_PB[change.from_value],
            to_state=LIFECYCLE_STATE_PB[change.to_value],
        )
        if change.corrected_since_us is not None:
            message.corrected_since_time.CopyFrom(timestamp(change.corrected_since_us))
        subject = subjects.lifecycle(change.app_id)
    elif change.kind == kinds.RFM:
        message = changes_pb2.RfmGroupChanged(
            header=header(change),
            from_group=RFM_GROUP_PB[change.from_value],
            to_group=RFM_GROUP_PB[change.to_value],
            scores=scores_pb(change),
        )
        subject = subjects.rfm(change.app_id)
    else:
        message = changes_pb2.MembershipChanged(
            header=header(change),
            segment_id=change.segment_id,
            segment_version=change.segment_version,
            direction=DIRECTIONS[change.to_value],
        )
        subject = subjects.segment(change.app_id, change.segment_id)
    return subject, message.DESCRIPTOR.full_name, message.SerializeToString()
