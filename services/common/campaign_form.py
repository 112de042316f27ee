"""The readable form of a campaign (YAML) <-> cohortflow.campaigns.v1.Campaign.

The form is the proto's own fields, written for people: enum values by their short
lowercase name (`in_app` for CHANNEL_IN_APP, `entered` for DIRECTION_ENTERED), durations
as 90s / 15m / 24h / 7d, times as ISO-8601 and `Value`s as plain scalars. The walk
follows the message descriptors, so every field of the proto is writable and a typo is
refused with its path; protobuf's JSON parser does the rest.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cohortflow.campaigns.v1 import campaigns_pb2 as pb
from cohortflow.types.v1 import types_pb2
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from services.common.segments.definition import parse_duration, parse_time

# Set by the service, never by a file.
OUTPUT_ONLY = frozenset({"campaign_id", "state", "version", "create_time", "update_time"})
_DURATION = "google.protobuf.Duration"
_TIMESTAMP = "google.protobuf.Timestamp"
_VALUE = "cohortflow.types.v1.Value"


class FormError(ValueError):
    """A field of a campaign that cannot be read; the message starts with its path."""


def campaign_from_form(data: Any, path: str = "campaign") -> pb.Campaign:
    """The Campaign a readable form describes, or FormError naming the bad field."""
    if not isinstance(data, dict):
        raise FormError(f"{path}: expected a mapping of campaign fields")
    misplaced = sorted(OUTPUT_ONLY & data.keys())
    if misplaced:
        raise FormError(f"{path}.{misplaced[0]}: set by the service, leave it out")
    json = _message(data, pb.Campaign.DESCRIPTOR, path)  # type: ignore[arg-type]
    try:
        return json_format.ParseDict(json, pb.Campaign())
    except json_format.ParseError as error:
        raise FormError(f"{path}: {error}") from None


def _message(data: Any, descriptor: Descriptor, path: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise FormError(f"{path}: expected a mapping")
    out: dict[str, Any] = {}
    for key, value in data.items():
        field = descriptor.fields_by_name.get(str(key))
        if field is None:
            known = ", ".join(sorted(descriptor.fields_by_name))
            raise FormError(f"{path}.{key}: unknown field (known: {known})")
        out[field.name] = _field(value, field, f"{path}.{key}")
    return out


def _field(value: Any, field: FieldDescriptor, path: str) -> Any:
    message = field.message_type
    if message is not None and message.GetOptions().map_entry:
        if not isinstance(value, dict):
            raise FormError(f"{path}: expected a mapping")
        entry = message.fields_by_name["value"]
        return {str(k): _single(v, entry, f"{path}.{k}") for k, v in value.items()}
    if field.is_repeated:
        if not isinstance(value, list):
            raise FormError(f"{path}: expected a list")
        return [_single(v, field, f"{path}[{i}]") for i, v in enumerate(value)]
    return _single(value, field, path)


def _single(value: Any, field: FieldDescriptor, path: str) -> Any:
    if field.enum_type is not None:
        return _enum(value, field.enum_type, path)
    message = field.message_type
    if message is None:
        return value
    try:
        if message.full_name == _DURATION:
            seconds, micros = divmod(parse_duration(value), 1_000_000)
            return f"{seconds}.{micros:06d}s"
        if message.full_name == _TIMESTAMP:
            return _timestamp(value)
    except ValueError as error:
        raise FormError(f"{path}: {error}") from None
    if message.full_name == _VALUE:
        return _value(value, path)
    return _message(value, message, path)


def _enum(value: Any, enum: EnumDescriptor, path: str) -> str:
    prefix = enum.values_by_number[0].name.removesuffix("UNSPECIFIED")
    text = str(value).strip().upper().replace("-", "_").replace(" ", "_")
    for name in (prefix + text, text):
        if name in enum.values_by_name and not name.endswith("_UNSPECIFIED"):
            return name
    names = (v.name.removeprefix(prefix).lower() for v in enum.values if v.number)
    raise FormError(f"{path}: {value!r} is not one of {', '.join(names)}")


def _timestamp(value: Any) -> str:
    if isinstance(value, datetime):  # YAML reads unquoted times itself
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    else:
        moment = datetime.fromtimestamp(parse_time(value) / 1_000_000, UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _value(value: Any, path: str) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"bool_value": value}
    if isinstance(value, int | float):
        return {"number_value": value}
    if isinstance(value, str):
        return {"string_value": value}
    raise FormError(f"{path}: expected a string, number or true/false")


def campaign_to_form(campaign: pb.Campaign) -> dict[str, Any]:
    """The readable form of `campaign` (without the fields the service sets), which
    `campaign_from_form` reads back into the same definition."""
    form = _form_of(campaign)
    return {k: v for k, v in form.items() if k not in OUTPUT_ONLY}


def _form_of(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field, value in message.ListFields():
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            item = entry.fields_by_name["value"]
            out[field.name] = {k: _form_value(v, item) for k, v in value.items()}
        elif field.is_repeated:
            out[field.name] = [_form_value(v, field) for v in value]
        else:
            shown = _form_value(value, field)
            if shown is not None and shown != {}:  # an empty message is the default
                out[field.name] = shown
    return out


def _form_value(value: Any, field: FieldDescriptor) -> Any:
    if field.enum_type is not None:
        prefix = field.enum_type.values_by_number[0].name.removesuffix("UNSPECIFIED")
        return field.enum_type.values_by_number[value].name.removeprefix(prefix).lower()
    message = field.message_type
    if message is None:
        return value
    if message.full_name == _DURATION:
        return _duration_text(value.ToMicroseconds())
    if message.full_name == _TIMESTAMP:
        return value.ToDatetime(UTC).isoformat().replace("+00:00", "Z")
    if message.full_name == _VALUE:
        kind = value.WhichOneof("kind")
        return getattr(value, kind) if kind else None
    return _form_of(value)


def _duration_text(us: int) -> str | None:
    """90s, 15m, 24h, 7d (None for zero: the form leaves it out)."""
    if us <= 0:
        return None
    for unit, size in (("d", 86_400_000_000), ("h", 3_600_000_000), ("m", 60_000_000)):
        if us % size == 0:
            return f"{us // size}{unit}"
    return f"{us / 1_000_000:g}s"


def trigger_text(campaign: pb.Campaign) -> str:
    """`entered cart-abandoners`, `lifecycle -> dormant`, `rfm -> champions`, ..."""
    trigger = campaign.trigger
    kind = trigger.WhichOneof("kind")
    if kind == "segment":
        exited = trigger.segment.direction == pb.SegmentTrigger.DIRECTION_EXITED
        return f"{'exited' if exited else 'entered'} {trigger.segment.segment_id}"
    if kind == "lifecycle":
        states = trigger.lifecycle.to_states
        return "lifecycle -> " + ", ".join(_label(types_pb2.LifecycleState, s) for s in states)
    if kind == "rfm":
        groups = trigger.rfm.to_groups
        return "rfm -> " + ", ".join(_label(types_pb2.RfmGroup, g) for g in groups)
    if kind == "broadcast":
        return f"broadcast to {trigger.broadcast.segment_id}"
    return "-"


def _label(enum: Any, number: int) -> str:
    """LIFECYCLE_STATE_ACTIVE -> active, RFM_GROUP_AT_RISK -> at risk."""
    prefix = enum.Name(0).removesuffix("UNSPECIFIED")
    return str(enum.Name(number)).removeprefix(prefix).lower().replace("_", " ")
