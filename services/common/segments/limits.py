"""How big a segment definition may be, checked before any of it is interpreted.

`measure` walks the dict form without recursion and stops at the first limit it finds, so
a hostile definition (a 100,000-value `in` list, nesting 1,000 deep, a megabyte string,
an alias-expanded YAML tree) costs at most one pass up to the point where it fails.

Two sets of limits:
- `LIMITS`: what SegmentService (CreateSegment, UpdateSegment, PreviewSegment) and segment
  files accept for a new definition;
- `STORED_LIMITS`: what a definition read back from the log is held to. Definitions were
  stored before the size limits existed, and the log is the source of truth, so only the
  structural limits (which were always enforced) apply: every stored definition parses
  exactly as it did when it was accepted.
"""

from __future__ import annotations

import json
import math
import reprlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Limits:
    # Conditions inside all/any/none, counted from the root (0).
    max_depth: int = 12
    # Conditions in one definition.
    max_conditions: int = 200
    # Dicts and lists inside one another: a valid definition needs about 30.
    max_nesting: int = 40
    # Items of any one list (`in` values, countries, cities, where filters, states ...).
    max_list: int | None = 1_000
    # Characters of any one string (names, keys, values; ingest stores at most 1,024).
    max_string: int | None = 1_024
    # Bytes of the whole definition as compact JSON, the form the log stores.
    max_bytes: int | None = 65_536
    # Strings must be text PostgreSQL and protobuf can hold: no NUL, no lone surrogates.
    plain_text: bool = True


LIMITS = Limits()
STORED_LIMITS = Limits(max_list=None, max_string=None, max_bytes=None, plain_text=False)


class _Short(reprlib.Repr):
    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxstring = 60
        self.maxother = 60
        self.maxlong = 40

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 128:  # repr of a huge int is slow, or refused past 4,300 digits
            return f"<a {x.bit_length()}-bit integer>"
        return super().repr_int(x, level)


_SHORT = _Short()


def shown(value: Any) -> str:
    """A short repr of any value, for messages (values may be huge or nested deeply)."""
    try:
        return _SHORT.repr(value)
    except Exception:
        return f"<{type(value).__name__}>"


def label(key: Any) -> str:
    """A dict key as a path step: itself if it is short text, else its short repr."""
    if isinstance(key, str) and key.isprintable() and 0 < len(key) <= 60:
        return key
    return shown(key)


def _leaf_bytes(value: Any) -> int:
    if isinstance(value, str):
        return len(json.dumps(value, ensure_ascii=False).encode())
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return value.bit_length() * 3 // 10 + 2  # about its decimal digits
    if isinstance(value, float):
        return len(repr(value)) if math.isfinite(value) else 9
    return len(shown(value))


def measure(data: Any, path: str, limits: Limits) -> tuple[str, str] | None:
    """The first (path, problem) where `data` exceeds `limits`, or None.

    One iterative pass; lists are checked by length before their items are visited, and the
    byte count stops the walk once it passes the limit, so the cost is bounded by the
    limits, not by the input (without a byte limit, by the distinct objects of the input).
    """
    total = 0
    shared: set[int] = set()
    stack: list[tuple[Any, str, int]] = [(data, path, 1)]
    while stack:
        value, here, depth = stack.pop()
        if isinstance(value, dict | list):
            if limits.max_bytes is None:
                # Without a byte count, a container seen before (YAML aliases share them)
                # needs no second visit: the reader's own limits bound what it reads of it.
                if id(value) in shared:
                    continue
                shared.add(id(value))
            if depth > limits.max_nesting:
                return here, (
                    f"nests more than {limits.max_nesting} deep"
                    f" (conditions nest at most {limits.max_depth} deep)"
                )
            if limits.max_list is not None and len(value) > limits.max_list:
                return here, f"has {len(value)} items; at most {limits.max_list}"
            total += 2 + max(len(value) - 1, 0)
            if isinstance(value, list):
                items = reversed(list(enumerate(value)))
                stack.extend((item, f"{here}[{i}]", depth + 1) for i, item in items)
                continue
            for key, item in reversed(list(value.items())):
                step = f"{here}.{label(key)}"
                problem = _leaf(key, step, limits)
                if problem is not None:
                    return problem
                total += (_leaf_bytes(key) + 1) if limits.max_bytes is not None else 0
                stack.append((item, step, depth + 1))
        else:
            problem = _leaf(value, here, limits)
            if problem is not None:
                return problem
            total += _leaf_bytes(value) if limits.max_bytes is not None else 0
        if limits.max_bytes is not None and total > limits.max_bytes:
            return path, f"is more than {limits.max_bytes} bytes as JSON"
    return None


def _leaf(value: Any, here: str, limits: Limits) -> tuple[str, str] | None:
    if isinstance(value, str):
        if limits.max_string is not None and len(value) > limits.max_string:
            return here, f"is {len(value)} characters long; at most {limits.max_string}"
        if limits.plain_text and "\x00" in value:
            return here, "must not contain NUL characters"
        if limits.plain_text and not _encodable(value):
            return here, "must be valid Unicode text (it has a lone surrogate)"
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
