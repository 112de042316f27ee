"""Change-stream messages (protobuf on JetStream) into domain Changes.

A message that cannot be read (unknown type, bad bytes, missing ids) raises
PoisonMessage: redelivering it would never help.
"""

from __future__ import annotations

from collections.abc import Mapping

from cohortflow.changes.v1 import changes_pb2
from google.protobuf.message import DecodeError

from services.campaign.domain.changes import Change
from services.campaign.proto_names import lifecycle_name, rfm_name

_TYPES = {
    changes_pb2.LifecycleChanged.DESCRIPTOR.full_name: changes_pb2.LifecycleChanged,
    changes_pb2.RfmGroupChanged.DESCRIPTOR.full_name: changes_pb2.RfmGroupChanged,
    changes_pb2.MembershipChanged.DESCRIPTOR.full_name: changes_pb2.MembershipChanged,
}


class PoisonMessage(Exception):
    pass


def _us(ts: object) -> int:
    return ts.seconds * 1_000_000 + ts.nanos // 1000  # type: ignore[attr-defined]


def decode_change(headers: Mapping[str, str] | None, data: bytes) -> Change:
    type_name = (headers or {}).get("Cohortflow-Type", "")
    message_class = _TYPES.get(type_name)
    if message_class is None:
        raise PoisonMessage(f"unknown Cohortflow-Type {type_name!r}")
    message = message_class()
    try:
        message.ParseFromString(data)
    except DecodeError as error:
        raise PoisonMessage(f"cannot decode {type_name}: {error}") from error
    header = message.header
    for name in ("change_id", "app_id", "user_id"):
        if not getattr(header, name):
            raise PoisonMessage(f"{type_name} without header.{name}")
    common = {
        "change_id": header.change_id,
        "app_id": header.app_id,
        "user_id": header.user_id,
        "recorded_us": _us(header.recorded_time),
        "effective_us": _us(header.effective_time),
        "user_sequence": header.user_sequence,
        "event_ids": tuple(header.cause.event_ids),
        "event_name": header.cause.event_name,
        "correction": header.correction,
        "imported": header.imported,
    }
    if isinstance(message, changes_pb2.MembershipChanged):
        if message.direction == changes_pb2.MembershipChanged.DIRECTION_UNSPECIFIED:
            raise PoisonMessage("MembershipChanged without direction")
        return Change(
            kind="segment",
            segment_id=message.segment_id,
            segment_version=message.segment_version,
            entered=message.direction == changes_pb2.MembershipChanged.DIRECTION_ENTERED,
            **common,
        )
    if isinstance(message, changes_pb2.LifecycleChanged):
        return Change(
            kind="lifecycle",
            from_value=lifecycle_name(message.from_state),
            to_value=lifecycle_name(message.to_state),
            **common,
        )
    return Change(
        kind="rfm",
        from_value=rfm_name(message.from_group),
        to_value=rfm_name(message.to_group),
        **common,
    )
