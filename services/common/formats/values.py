"""Source properties and traits as cohortflow values: flattened, keys made valid.

cohortflow values are strings, numbers, bools, timestamps and lists of one kind; source
tools allow any JSON. So:
- a nested object becomes dotted keys (`{"address": {"city": "Berlin"}}` ->
  `address.city`), at most `MAX_DEPTH` objects deep;
- a list of scalars of one kind stays a list; any other list (objects, lists, mixed kinds)
  becomes a list of texts, each non-string item as its compact JSON;
- null (also inside lists) is left out: to these tools it means "not set";
- a key keeps its letters, digits and `_ . $ -`; every run of other characters becomes
  one `_` (none at the start or end), and a key that does not start with a letter or `$`
  gets `x_` before it (`Plan Type` -> `Plan_Type`, `[Amplitude] Page URL` ->
  `Amplitude_Page_URL`, `1st visit` -> `x_1st_visit`). Two source keys that end up the
  same key are an error naming the second.
Strings stay strings (no guessing of times or numbers from text).
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from cohortflow.types.v1 import types_pb2

from services.common.formats.fields import NUL_REASON, FieldError, child, obj

MAX_DEPTH = 8
_NOT_KEY = re.compile(r"[^A-Za-z0-9_.$\-]+")
_KEY_START = re.compile(r"[A-Za-z$]")

Values = dict[str, types_pb2.Value]


def cohortflow_key(key: str) -> str:
    """A source key as a valid cohortflow property or trait key (see the module doc)."""
    out = _NOT_KEY.sub("_", key)
    if out != key:
        start = 1 if _NOT_KEY.match(key) else 0
        end = len(out) - 1 if _NOT_KEY.match(key[-1]) else len(out)
        out = out[start:end]
    return out if _KEY_START.match(out) else "x_" + out


def flatten(
    value: Any, path: str, *, skip: frozenset[str] = frozenset(), prefix: str = ""
) -> Values:
    """The values of the source object at `path`, flattened (see the module doc); top-level
    keys in `skip` are left out (they were read into fields of their own), each key gets
    `prefix` before it."""
    out: Values = {}
    source = obj(value, path)
    _walk({k: v for k, v in source.items() if k not in skip}, path, prefix, 1, out, {})
    return out


def add_absent(values: Values, extra: Values) -> None:
    """`extra` into `values`, where `values` has no such key."""
    for key, value in extra.items():
        values.setdefault(key, value)


def _walk(
    source: dict[str, Any],
    path: str,
    prefix: str,
    depth: int,
    out: Values,
    origin: dict[str, str],
) -> None:
    for key, item in source.items():
        where = child(path, key)
        if "\x00" in key:
            raise FieldError(where, "the key " + NUL_REASON)
        name = prefix + cohortflow_key(key)
        if item is None:
            continue
        if isinstance(item, dict):
            if depth >= MAX_DEPTH:
                raise FieldError(where, f"nests objects more than {MAX_DEPTH} deep")
            _walk(item, where, name + ".", depth + 1, out, origin)
            continue
        if name in origin:
            raise FieldError(where, f"becomes the key {name!r}, as {origin[name]} does")
        out[name] = _list(item, where) if isinstance(item, list) else scalar(item, where)
        origin[name] = where


def scalar(value: Any, path: str) -> types_pb2.Value:
    """A JSON string, number or bool as a value."""
    if isinstance(value, bool):
        return types_pb2.Value(bool_value=value)
    if isinstance(value, int | float):
        return types_pb2.Value(number_value=float(value))
    if isinstance(value, str):
        if "\x00" in value:
            raise FieldError(path, NUL_REASON)
        return types_pb2.Value(string_value=value)
    raise FieldError(path, "must be a string, number or boolean")


def _kind(value: Any) -> type:
    return bool if isinstance(value, bool) else float if isinstance(value, int) else type(value)


def _list(items: list[Any], path: str) -> types_pb2.Value:
    present = [(i, item) for i, item in enumerate(items) if item is not None]
    kinds = {_kind(item) for _, item in present}
    read = scalar if len(kinds) <= 1 and kinds <= {bool, float, str} else _as_text
    values = [read(item, f"{path}[{i}]") for i, item in present]
    return types_pb2.Value(list_value=types_pb2.ValueList(values=values))


def _as_text(item: Any, path: str) -> types_pb2.Value:
    if isinstance(item, str):
        return scalar(item, path)
    try:
        return types_pb2.Value(string_value=orjson.dumps(item).decode())
    except orjson.JSONEncodeError:
        raise FieldError(path, "nests too deep to keep as JSON text") from None
