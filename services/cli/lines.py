"""The physical lines of an import file, read as bytes and checked one at a time.

One bad line never stops the file: a line that is not UTF-8, holds a NUL byte or is longer
than `MAX_LINE_BYTES` comes out as a `Line` with its number and the problem (a long line is
skipped without being held in memory), and reading goes on with the next one. Lines end at
`\\n`; a `\\r` before it is dropped (CRLF files). A UTF-8 byte order mark at the start of the
file is dropped; one of UTF-16 or UTF-32 stops the import (every line would be unreadable).
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

# The longest line read, without its line ending (README, CLI: import files).
MAX_LINE_BYTES = 1024 * 1024
_SKIP_CHUNK = 64 * 1024
_OTHER_ENCODINGS = [
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
]


class FileProblem(Exception):
    """The file as a whole cannot be read (e.g. it is UTF-16, or a CSV header is not
    understood); `line` is where that shows."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


@dataclass(frozen=True)
class Line:
    """Line `number` (from 1) without its line ending, or why it cannot be read."""

    number: int
    text: str
    problem: str = ""


def _skip_rest(stream: BinaryIO) -> int:
    """Read up to the end of the current line; how many bytes that was."""
    skipped = 0
    while chunk := stream.readline(_SKIP_CHUNK):
        skipped += len(chunk)
        if chunk.endswith(b"\n"):
            break
    return skipped


def _checked(number: int, raw: bytes) -> Line:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        where = f"byte 0x{raw[bad.start]:02x} at byte {bad.start + 1} of the line"
        return Line(number, "", f"not UTF-8 text ({where})")
    if "\x00" in text:
        return Line(number, "", f"holds a NUL byte (at byte {raw.index(0) + 1} of the line)")
    return Line(number, text)


def read_lines(stream: BinaryIO, max_bytes: int = MAX_LINE_BYTES) -> Iterator[Line]:
    """Every line of `stream`, in order, each read and checked on its own."""
    number = 0
    while raw := stream.readline(max_bytes + 2):  # room for the line and "\r\n"
        number += 1
        if number == 1:
            for bom, encoding in _OTHER_ENCODINGS:
                if raw.startswith(bom):
                    msg = f"the file is {encoding} text (it starts with its byte order mark)"
                    raise FileProblem(1, msg + "; save it as UTF-8")
            raw = raw.removeprefix(codecs.BOM_UTF8)
        size = len(raw)
        if size == max_bytes + 2 and not raw.endswith(b"\n"):
            size += _skip_rest(stream)
        content = raw.removesuffix(b"\n").removesuffix(b"\r")
        if len(content) > max_bytes:
            why = f"longer than the limit of {max_bytes:,} bytes ({size:,} bytes); skipped"
            yield Line(number, "", why)
            continue
        yield _checked(number, content)
