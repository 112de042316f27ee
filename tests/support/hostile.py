"""Hostile requests built from nothing but the protobuf descriptors (hypothesis).

`messages(descriptor)` draws well-typed messages of any request type, filled with the
values that break edges: NUL and control characters, ANSI escapes, huge strings,
extreme integers, NaN, unknown enum numbers, timestamps outside 0001..9999, and deep
nesting along the type's own recursion (Condition in Condition...). `raw_requests()`
draws bytes that are mostly not a valid message. A `Palette` adds a test's own strings
and numbers, or (hostile=False) uses only those: another app's ids, page tokens, cursors
and positions, for the tenant-isolation sweep.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

HOSTILE_TEXT = [
    "",
    "\x00",
    "a\x00b",
    "\x1b[31mred\x1b[0m",
    "\x9b2J",
    "\x7f",
    "\x07\x08",
    "\t\n\r",
    "Grüße 🎉",
    "\u202egnp.exe",
    "x" * 70_000,
    "' OR 1=1 --",
    "%s%n%x",
    "{{ 7 * 7 }}",
    "{% for x in range(10**9) %}",
    "../../etc/passwd",
    "vip",
    "pro",
    "=",
    "in",
    "exists",
    ">=",
    "Order Completed",
    "Europe/Berlin",
    "DE",
    "30d",
    "eyJhZnRlciI6IngifQ",  # {"after":"x"}
    "eyJvZmZzZXQiOjkyMjMzNzIwMzY4NTQ3NzU4MDh9",  # {"offset":2^63}
]
_INT_EDGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_ENUM: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
_FLOATS = (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT)
MAX_DEPTH = 4


def message_class(descriptor: Descriptor) -> type[Message]:
    return message_factory.GetMessageClass(descriptor)


@dataclass(frozen=True)
class Palette:
    """Where a generated message takes its values from."""

    words: tuple[str, ...] = ()
    numbers: tuple[int, ...] = ()
    hostile: bool = True  # False: only `words`, `numbers` and known enum values

    def text(self) -> st.SearchStrategy[str]:
        if not self.hostile:
            return st.sampled_from(["", *self.words])
        return st.one_of(
            st.sampled_from([*HOSTILE_TEXT, *self.words]),
            st.text(st.characters(codec="utf-8"), max_size=40),
        )

    def integers(self, kind: int) -> st.SearchStrategy[int]:
        low, high = _INT_EDGES[kind]
        if not self.hostile:
            return st.sampled_from([v for v in (0, 1, 2, *self.numbers) if low <= v <= high])
        edges = [
            v
            for v in (low, high, -1, 0, 1, 2, 100, 2**31, 2**53, 2**62, *self.numbers)
            if low <= v <= high
        ]
        return st.one_of(st.sampled_from(edges), st.integers(low, high), st.integers(0, 50))

    def scalar(self, field: FieldDescriptor) -> st.SearchStrategy[Any]:
        if field.type == FieldDescriptor.TYPE_STRING:
            return self.text()
        if field.type == FieldDescriptor.TYPE_BYTES:
            return st.binary(max_size=64)
        if field.type == FieldDescriptor.TYPE_BOOL:
            return st.booleans()
        if field.type in _FLOATS:
            width = 32 if field.type == FieldDescriptor.TYPE_FLOAT else 64
            return st.floats(allow_nan=self.hostile, allow_infinity=self.hostile, width=width)
        if field.type == FieldDescriptor.TYPE_ENUM:
            known = st.sampled_from([v.number for v in field.enum_type.values])  # type: ignore[union-attr]
            return st.one_of(known, self.integers(field.type)) if self.hostile else known
        return self.integers(field.type)

    def many(self, field: FieldDescriptor) -> st.SearchStrategy[Any]:
        """Now and then a long list (of small values, to stay under the size limits)."""
        if self.hostile and field.type == FieldDescriptor.TYPE_STRING:
            return st.sampled_from(["\x00", "a", "vip"])
        return self.scalar(field)


@st.composite
def _message(draw: Any, descriptor: Descriptor, depth: int, palette: Palette) -> Message:
    out = message_class(descriptor)()
    for field in descriptor.fields:
        if not draw(st.booleans()):
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_field = field.message_type.fields_by_name["key"]
            value_field = field.message_type.fields_by_name["value"]
            keys = draw(st.lists(palette.scalar(key_field), max_size=3, unique=True))
            target = getattr(out, field.name)
            for key in keys:
                if value_field.message_type is not None:
                    if depth < MAX_DEPTH:
                        target[key].CopyFrom(
                            draw(_message(value_field.message_type, depth + 1, palette))
                        )
                else:
                    target[key] = draw(palette.scalar(value_field))
        elif field.message_type is not None:
            if depth >= MAX_DEPTH:
                continue
            child = _message(field.message_type, depth + 1, palette)
            if field.is_repeated:
                getattr(out, field.name).extend(draw(st.lists(child, max_size=3)))
            else:
                getattr(out, field.name).CopyFrom(draw(child))
        elif field.is_repeated:
            long_list = palette.hostile and draw(st.integers(0, 9)) == 0
            values = draw(
                st.lists(palette.many(field), min_size=300, max_size=600)
                if long_list
                else st.lists(palette.scalar(field), max_size=4)
            )
            getattr(out, field.name).extend(values)
        else:
            setattr(out, field.name, draw(palette.scalar(field)))
    return out


def recursion(descriptor: Descriptor) -> tuple[list[str], list[str]] | None:
    """Field names from `descriptor` to a message type that contains itself, and the
    names of that cycle (for Condition: [...,"condition"], ["all", "conditions"])."""

    def search(
        current: Descriptor, path: list[tuple[Descriptor, str]]
    ) -> tuple[list[str], list[str]] | None:
        seen = [d for d, _ in path]
        if current in seen:
            start = seen.index(current)
            return [n for _, n in path[:start]], [n for _, n in path[start:]]
        for field in current.fields:
            if field.message_type is None or field.message_type.GetOptions().map_entry:
                continue
            found = search(field.message_type, [*path, (current, field.name)])
            if found:
                return found
        return None

    return search(descriptor, [])


def nested(descriptor: Descriptor, depth: int) -> Message | None:
    """A request nested `depth` times along its type's recursion (None if it has none)."""
    route = recursion(descriptor)
    if route is None:
        return None
    lead, cycle = route
    root = message_class(descriptor)()
    node: Any = root
    for name in [*lead, *cycle * depth]:
        child = getattr(node, name)
        node = child.add() if hasattr(child, "add") else child
    node.SetInParent()
    return root


def messages(descriptor: Descriptor, palette: Palette = Palette()) -> st.SearchStrategy[Message]:
    """Well-typed messages of `descriptor` from `palette`; hostile ones now and then
    nested 20 to 1,000 deep along the type's recursion."""
    typed = _message(descriptor, 0, palette)
    if not palette.hostile or recursion(descriptor) is None:
        return typed
    deep = st.sampled_from([20, 99, 100, 101, 150, 1000]).map(
        lambda depth: nested(descriptor, depth)
    )
    return st.one_of(typed, typed, typed, deep)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _deep_bytes(depth: int) -> bytes:
    body = b""
    for _ in range(depth):
        body = b"\x0a" + _varint(len(body)) + body
    return body


RAW_EDGES = [
    b"",
    b"\x00",
    b"\xff" * 16,
    b"\x0a\x05abc",  # truncated string
    b"\x0a\x02\xc3\x28",  # invalid UTF-8 in field 1
    b"\x0a\x03\xed\xa0\x80",  # an encoded surrogate
    b"\x0b" * 200 + b"\x0c" * 200,  # groups 200 deep
    _deep_bytes(150),
    _deep_bytes(2000),
    b"\x08" + b"\xff" * 10 + b"\x01",  # over-long varint
    b"\x12\xff\xff\xff\xff\x0f",  # length 4 GiB, no body
    b"\x7a\x00",  # field 15, empty
]


def raw_requests() -> st.SearchStrategy[bytes]:
    return st.one_of(st.sampled_from(RAW_EDGES), st.binary(max_size=256))
