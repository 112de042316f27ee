"""Durations ("30d", "24h") and times (ISO-8601 with an offset or an IANA zone) of definitions."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.common.segments.limits import shown
from services.eventlog.events import datetime_to_us

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d|w|y)")
_UNIT_US = {
    "s": 1_000_000,
    "m": 60_000_000,
    "h": 3_600_000_000,
    "d": 86_400_000_000,
    "w": 7 * 86_400_000_000,
    "y": 365 * 86_400_000_000,
}
# The range of a protobuf Duration (10,000 years): longer is a typo, and would overflow the
# int64 microseconds of the SQL that previews and builds run.
MAX_DURATION_US = 315_576_000_000 * 1_000_000
# The longest text either parser reads (a duration or time is a few dozen characters).
_MAX_TEXT = 100


def parse_duration(text: Any) -> int:
    """Microseconds of "30d", "24h", "15m", "90s", "2w", "1y"; ValueError otherwise."""
    if isinstance(text, int | float) and not isinstance(text, bool) and text > 0:
        if not text * 1_000_000 <= MAX_DURATION_US:  # also refuses NaN and infinity
            msg = "must be at most 10,000 years"
            raise ValueError(msg)
        if int(text * 1_000_000) <= 0:
            msg = "must be at least a microsecond"
            raise ValueError(msg)
        return int(text * 1_000_000)
    match = (
        _DURATION.fullmatch(text.strip())
        if isinstance(text, str) and len(text) <= _MAX_TEXT
        else None
    )
    if not match:
        msg = f"{shown(text)} is not a duration like 30d, 24h, 15m or 90s"
        raise ValueError(msg)
    us = int(float(match.group(1)) * _UNIT_US[match.group(2)])
    if us <= 0:
        msg = "must be longer than zero"
        raise ValueError(msg)
    if us > MAX_DURATION_US:
        msg = "must be at most 10,000 years"
        raise ValueError(msg)
    return us


def format_duration(us: int) -> str:
    for unit in ("y", "w", "d", "h", "m", "s"):
        size = _UNIT_US[unit]
        if us % size == 0:
            return f"{us // size}{unit}"
    whole, fraction = divmod(us, 1_000_000)
    return f"{whole}.{fraction:06d}".rstrip("0") + "s"  # never "1e-05s": the parser reads it


def parse_time(text: Any) -> int:
    """Microseconds of an ISO-8601 time with an offset ("...Z", "+01:00") or followed by an
    IANA zone ("2026-03-29T02:30:00 Europe/Berlin")."""
    if not isinstance(text, str) or len(text) > _MAX_TEXT:
        msg = f"{shown(text)} is not a time like 2026-01-01T00:00:00Z"
        raise ValueError(msg)
    value, _, zone = text.strip().partition(" ")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        msg = f"{text!r} is not an ISO-8601 time like 2026-01-01T00:00:00Z"
        raise ValueError(msg) from None
    if zone:
        if moment.tzinfo is not None:
            msg = "give either an offset or a time zone, not both"
            raise ValueError(msg)
        try:
            moment = moment.replace(tzinfo=ZoneInfo(zone))
        # OSError: a name zoneinfo takes for a path, e.g. "America" (a directory of zones).
        except (ZoneInfoNotFoundError, ValueError, OSError):
            msg = f"unknown IANA time zone {zone!r}"
            raise ValueError(msg) from None
    if moment.tzinfo is None:
        msg = f"{text!r} needs an offset (Z, +01:00) or an IANA zone"
        raise ValueError(msg)
    return datetime_to_us(moment)
