"""Every string slot of a populated protobuf message, found from its descriptor, and a way
to rewrite one slot in a copy: so a test can put a NUL into each field a message has,
including fields added later."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

Step = tuple[str, Any]  # ("field", name) | ("index", i) | ("key", k) | ("value", k)


@dataclass(frozen=True)
class Slot:
    """One string in a message: its path (`event.properties["sku"].string_value`) and how
    to reach it."""

    path: str
    steps: tuple[Step, ...]

    def rewritten(self, message: Message, text: str) -> Message:
        """A copy of `message` with this slot set to `text`."""
        copy = type(message)()
        copy.CopyFrom(message)
        _set(copy, list(self.steps), text)
        return copy


def string_slots(message: Message) -> list[Slot]:
    """Every set string of `message`, nested messages, lists and map keys included."""
    return list(_slots(message, "", ()))


def _slots(message: Message, path: str, steps: tuple[Step, ...]) -> Iterator[Slot]:
    for field, value in message.ListFields():
        name = f"{path}{field.name}"
        here = (*steps, ("field", field.name))
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            for key in list(value):
                item = f"{name}[{json.dumps(key)}]"
                if isinstance(key, str):
                    yield Slot(f"{item}(key)", (*here, ("key", key)))
                yield from _one(value_field, value[key], item, (*here, ("value", key)))
        elif field.is_repeated:
            for index, item in enumerate(value):
                yield from _one(field, item, f"{name}[{index}]", (*here, ("index", index)))
        else:
            yield from _one(field, value, name, here)


def _one(field: FieldDescriptor, value: Any, path: str, steps: tuple[Step, ...]) -> Iterator[Slot]:
    if field.type == FieldDescriptor.TYPE_STRING:
        yield Slot(path, steps)
    elif field.message_type is not None:
        yield from _slots(value, f"{path}.", steps)


def _set(target: Any, steps: list[Step], text: str) -> None:
    kind, arg = steps[0]
    rest = steps[1:]
    if kind == "field":
        if not rest:
            setattr(target, arg, text)
            return
        _set(getattr(target, arg), rest, text)
    elif kind == "index":
        if not rest:
            target[arg] = text
            return
        _set(target[arg], rest, text)
    elif kind == "key":
        item = target[arg]
        del target[arg]
        if isinstance(item, Message):
            target[text].CopyFrom(item)
        else:
            target[text] = item
    else:  # value
        if not rest:
            target[arg] = text
            return
        _set(target[arg], rest, text)
