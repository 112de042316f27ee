"""Quiet hours in the user's own time zone, DST included.

Local wall-clock times are converted with zoneinfo. An end of quiet hours that
falls into a spring-forward gap (e.g. 02:30 on the night clocks jump from 02:00
to 03:00) is shifted forward by the gap, as PEP 495 resolves it (fold=0): 03:30.
An end in a fall-back overlap is its first occurrence.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.campaign.domain.model import QuietHours


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    # OSError: a name zoneinfo takes for a path that is no zone ("America", far too long).
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def user_zone(user_timezone: str, default: str) -> ZoneInfo:
    return zone(user_timezone) or zone(default) or ZoneInfo("UTC")


def to_us(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def quiet_until(at_us: int, quiet: QuietHours, user_timezone: str) -> int | None:
    """If `at_us` falls in the user's quiet hours, when they end (UTC us); else None."""
    start, end = quiet.start_minute, quiet.end_minute
    if start == end:
        return None
    tz = user_zone(user_timezone, quiet.default_timezone)
    local = datetime.fromtimestamp(at_us / 1_000_000, tz)
    minute = local.hour * 60 + local.minute
    if start < end:
        if not start <= minute < end:
            return None
        end_day: date = local.date()
    else:
        if end <= minute < start:
            return None
        end_day = local.date() if minute < end else local.date() + timedelta(days=1)
    end_local = datetime.combine(end_day, time(end // 60, end % 60), tzinfo=tz)
    return to_us(end_local)
