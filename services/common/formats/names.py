"""Event names of the source tools as cohortflow event names.

cohortflow names start with a letter or digit and use letters, digits, spaces and
`_ . : / ( ) & ' + -`; `$` names are its system events. A source name is mapped in turn:
1. by the format's table of known events: lifecycle events to our system events
   (Segment's `Application Installed` is `$app_installed`), page and screen views to
   `Page Viewed` / `Screen Viewed` (Mixpanel's `$mp_web_page_view`, ...);
2. otherwise accents are dropped (`é` -> `e`), a leading `$` of the tool's own events
   goes (Mixpanel's `$ae_updated` -> `ae_updated`), every run of other characters becomes
   one space and leading punctuation goes (`[Amplitude] Page Viewed` ->
   `Amplitude Page Viewed`). A name with no letter or digit left is an error.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

from services.common.formats.fields import FieldError

PAGE_VIEWED = "Page Viewed"
SCREEN_VIEWED = "Screen Viewed"
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9 _.:/()&'+\-]+")
_LEADING = " _.:/()&'+-"


def event_name(raw: str, path: str, system: Mapping[str, str] | None = None) -> str:
    """The cohortflow name of the source event name `raw` found at `path`."""
    if not raw.strip():
        raise FieldError(path, "is required: the name of what happened")
    if system and raw in system:
        return system[raw]
    decomposed = unicodedata.normalize("NFKD", raw.removeprefix("$"))
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    name = " ".join(_NOT_IN_NAME.sub(" ", plain).split()).lstrip(_LEADING)
    if not name:
        raise FieldError(path, f"{raw[:40]!r} has no letter or digit to name an event by")
    return name
