"""YAML files read with limits, checked on the event stream before any object is built.

A YAML alias stands for the whole node it names, so a few lines of anchors and aliases can
stand for 10^7 nodes (an "alias bomb"): PyYAML shares the objects, but everything that walks
the result visits each of them. `load` first reads the file's parse events (flat, no
recursion), counting every alias as the number of nodes it stands for, and refuses the
file at the line where it passes a limit:

- `MAX_FILE_BYTES` bytes of UTF-8 text;
- `MAX_NODES` nodes (scalars, lists, mappings), aliases counted expanded;
- `MAX_DEPTH` lists and mappings inside one another; an alias inside the node it names.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

MAX_FILE_BYTES = 1_048_576
MAX_NODES = 100_000
MAX_DEPTH = 64

_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlFileError(ValueError):
    """A file that cannot be read as YAML within the limits; the message names the line."""


class _Loader(_Base):  # type: ignore[misc, valid-type]
    """Safe loading, with a constructor's own errors (a 5,000-digit number, month 13) marked."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as error:
            raise yaml.constructor.ConstructorError(
                None, None, str(error), node.start_mark
            ) from None


def _line(mark: Any) -> str:
    return f"line {mark.line + 1}" if mark is not None else "end of file"


def _check(text: str) -> None:
    """Raise YamlFileError where the event stream passes a limit."""
    nodes = depth = 0
    sizes: dict[str, int] = {}
    opened: list[tuple[str | None, int]] = []
    for event in yaml.parse(text, Loader=_Base):
        if isinstance(event, yaml.CollectionStartEvent):
            nodes += 1
            depth += 1
            if depth > MAX_DEPTH:
                raise YamlFileError(f"{_line(event.start_mark)}: nests more than {MAX_DEPTH} deep")
            opened.append((event.anchor, nodes))
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
            anchor, first = opened.pop()
            if anchor is not None:
                sizes[anchor] = nodes - first + 1
        elif isinstance(event, yaml.ScalarEvent):
            nodes += 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.AliasEvent):
            if any(anchor == event.anchor for anchor, _ in opened):
                raise YamlFileError(
                    f"{_line(event.start_mark)}: alias *{event.anchor} is inside the node it names"
                )
            nodes += sizes.get(event.anchor, 1)  # an unknown anchor: the loader names it
        if nodes > MAX_NODES:
            raise YamlFileError(
                f"{_line(event.start_mark)}: more than {MAX_NODES} YAML nodes"
                " (aliases count as the nodes they stand for)"
            )


def read_text(path: Path) -> str:
    """The file's text (`-`: stdin), at most MAX_FILE_BYTES; OSError if unreadable."""
    if str(path) == "-":
        stream = getattr(sys.stdin, "buffer", None)
        raw = (
            stream.read(MAX_FILE_BYTES + 1)
            if stream is not None
            else sys.stdin.read(MAX_FILE_BYTES + 1).encode()
        )
    else:
        with path.open("rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        raise YamlFileError(f"larger than {MAX_FILE_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise YamlFileError(f"line {line}: not UTF-8 ({error.reason})") from None


def load(text: str) -> Any:
    """The document in `text`; YamlFileError (limits) or yaml.YAMLError (syntax), both marked."""
    try:
        _check(text)
    except yaml.reader.ReaderError as error:  # a character YAML refuses (NUL, controls)
        line = text.count("\n", 0, error.position) + 1
        raise YamlFileError(f"line {line}: {error.reason} {error.character!r}") from None
    return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
