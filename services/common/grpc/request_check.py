"""Checks every request of a service gets before its handler runs, from the descriptors alone.

- Text: no string anywhere in the request (nested messages, lists, map keys and values)
  breaks the rule of `services.common.text` (no NUL, no control characters but tab, line
  feed and carriage return; map keys none at all).
- Time: every `google.protobuf.Timestamp` lies in 0001-01-01..9999-12-31 with nanos in
  0..999,999,999, and every `google.protobuf.Duration` within +-10,000 years with nanos
  of the same sign, as their definitions require.

New fields and new RPCs are covered without code here. Each problem names the field by
its path from the request (`segment.condition.all.conditions[2].trait.key`).
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from services.common.grpc.errors import MAX_VIOLATIONS, FieldViolation
from services.common.text import name_problem, text_problem

MIN_TIMESTAMP_S = -62_135_596_800  # 0001-01-01T00:00:00Z
MAX_TIMESTAMP_S = 253_402_300_799  # 9999-12-31T23:59:59Z
MAX_DURATION_S = 315_576_000_000  # 10,000 years
_NANOS = 999_999_999
_STRING = FieldDescriptor.TYPE_STRING


def request_problems(request: Message, *, text: bool = True) -> list[FieldViolation]:
    """What is wrong with `request` in the terms above (at most MAX_VIOLATIONS + 1 problems)."""
    out: list[FieldViolation] = []
    _walk(request, "", text, out)
    return out


def _walk(message: Message, path: str, text: bool, out: list[FieldViolation]) -> None:
    kind = message.DESCRIPTOR.full_name
    if kind == "google.protobuf.Timestamp":
        _timestamp(message, path.rstrip("."), out)
        return
    if kind == "google.protobuf.Duration":
        _duration(message, path.rstrip("."), out)
        return
    for field, value in message.ListFields():
        if len(out) > MAX_VIOLATIONS:
            return
        name = f"{path}{field.name}"
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            _map(field, value, name, text, out)
        elif field.is_repeated:
            for index, item in enumerate(value):
                if len(out) > MAX_VIOLATIONS:
                    return
                _one(field, item, f"{name}[{index}]", text, out)
        else:
            _one(field, value, name, text, out)


def _map(field: FieldDescriptor, value: Any, name: str, text: bool, out: list) -> None:
    value_field = field.message_type.fields_by_name["value"]  # type: ignore[union-attr]
    for key, item in value.items():
        if len(out) > MAX_VIOLATIONS:
            return
        item_path = f"{name}[{json.dumps(key, ensure_ascii=False)}]"
        if text and isinstance(key, str) and (problem := name_problem(key)):
            out.append(FieldViolation(item_path, f"key {problem}"))
        _one(value_field, item, item_path, text, out)


def _one(field: FieldDescriptor, value: Any, path: str, text: bool, out: list) -> None:
    if field.type == _STRING:
        if text and (problem := text_problem(value)):
            out.append(FieldViolation(path, problem))
    elif field.message_type is not None:
        _walk(value, f"{path}.", text, out)


def _timestamp(ts: Any, path: str, out: list[FieldViolation]) -> None:
    if not MIN_TIMESTAMP_S <= ts.seconds <= MAX_TIMESTAMP_S:
        out.append(FieldViolation(path, "must lie between 0001-01-01 and 9999-12-31"))
    elif not 0 <= ts.nanos <= _NANOS:
        out.append(FieldViolation(f"{path}.nanos", "must be between 0 and 999999999"))


def _duration(d: Any, path: str, out: list[FieldViolation]) -> None:
    if not -MAX_DURATION_S <= d.seconds <= MAX_DURATION_S:
        out.append(FieldViolation(path, "must be within 10,000 years"))
    elif not -_NANOS <= d.nanos <= _NANOS or (d.seconds * d.nanos < 0):
        out.append(
            FieldViolation(
                f"{path}.nanos", "must be between -999999999 and 999999999, of the sign of seconds"
            )
        )
