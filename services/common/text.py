"""The one rule for which characters cohortflow stores, shared by every edge.

PostgreSQL text and jsonb cannot hold U+0000, and control characters in ids,
names and values end up in marketers' terminals, consoles and messages (an ESC
starts an ANSI escape sequence). So:

- every string a service stores or looks up may not contain a control
  character (Unicode category Cc: U+0000 to U+001F and U+007F to U+009F, which
  covers NUL, ESC, DEL and the C1 controls such as CSI U+009B) nor a surrogate
  code point (U+D800 to U+DFFF), except tab, line feed and carriage return,
  which free text may hold (property and trait values, descriptions, templates);
- ids, names and keys take none of them, not even tab or a line break
  (`name_problem`); each edge may be stricter still (printable ASCII ids...).

Pure functions without I/O, so domain validation may use them.
"""

from __future__ import annotations

import re
import unicodedata

_IN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_IN_NAME = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
TEXT_RULE = "control characters other than tab, line feed and carriage return are not allowed"
NAME_RULE = "control characters (including tab and line breaks) are not allowed"


def _describe(text: str, match: re.Match[str], rule: str) -> str:
    char = match.group()
    code = ord(char)
    if 0xD800 <= code <= 0xDFFF:
        name = "a surrogate"
    else:
        name = unicodedata.name(char, "") or {0: "NUL", 0x1B: "ESC", 0x7F: "DEL"}.get(code, "")
        name = name or "a control character"
    return f"contains U+{code:04X} ({name}) at character {match.start()}; {rule}"


def is_clean_text(text: str) -> bool:
    """True if `text` may be stored as free text (the fast check for hot paths)."""
    return _IN_TEXT.search(text) is None


def text_problem(text: str) -> str | None:
    """Why `text` may not be stored as free text (None if it may)."""
    match = _IN_TEXT.search(text)
    return None if match is None else _describe(text, match, TEXT_RULE)


def name_problem(text: str) -> str | None:
    """Why `text` may not be an id, name or key (None if it may, as far as characters go)."""
    match = _IN_NAME.search(text)
    return None if match is None else _describe(text, match, NAME_RULE)
