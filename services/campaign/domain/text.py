"""Text that marketers see: no control characters, ANSI escapes or bidi overrides.

Campaign text fields are refused when they carry control characters (C0, DEL, C1:
ANSI escape sequences start with ESC or CSI), NUL, or the Unicode bidi overrides
that make text display in another order than it is stored. Template parts (title,
body, data values) may hold tab and line breaks; every other field is one line.
Text the service composes from data it did not check (error messages naming a
user's trait, a provider's reply) is shown with such characters escaped (`\\x1b`).
"""

from __future__ import annotations

import re

# Bidi embeddings, overrides and isolates; DEL and the C1 controls.
_BIDI_AND_C1 = "\u202a-\u202e\u2066-\u2069\x7f-\x9f"
_UNSAFE_LINE = re.compile(f"[\x00-\x1f{_BIDI_AND_C1}]")
# The same, but tab, line feed and carriage return are allowed.
_UNSAFE_TEXT = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f{_BIDI_AND_C1}]")


def _describe(char: str) -> str:
    if char == "\x1b":
        return "an ANSI escape (ESC, U+001B)"
    if char in "\r\n":
        return "a line break"
    if ord(char) > 0x2000:
        return f"a bidi control character (U+{ord(char):04X})"
    return f"a control character (U+{ord(char):04X})"


def control_problem(text: str, *, multiline: bool = False) -> str | None:
    """Why `text` cannot be shown to people as it is, or None."""
    match = (_UNSAFE_TEXT if multiline else _UNSAFE_LINE).search(text)
    if match is None:
        return None
    return f"must not contain {_describe(match.group(0))} (at character {match.start() + 1})"


def shown(text: str) -> str:
    """`text` with control characters and bidi overrides escaped, for people to read."""
    return _UNSAFE_LINE.sub(lambda m: m.group(0).encode("unicode_escape").decode(), text)
