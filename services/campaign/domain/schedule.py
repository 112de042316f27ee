"""When broadcasts fire: one-off send times and cron schedules in a time zone.

Cron expressions are read by croniter in the broadcast's time zone, so "0 9 * * *"
fires at 09:00 local time on both sides of a DST change.
"""

from __future__ import annotations

from datetime import datetime

from croniter import CroniterBadDateError, croniter

from services.campaign.domain.model import BroadcastTrigger
from services.campaign.domain.quiet_hours import to_us, user_zone

MAX_RUNS_PER_TICK = 1000


def fire_times(trigger: BroadcastTrigger, after_us: int, now_us: int) -> list[int]:
    """Fire times t with after_us < t <= now_us, oldest first."""
    if not trigger.cron:
        at = trigger.send_time_us
        return [at] if at is not None and after_us < at <= now_us else []
    tz = user_zone(trigger.timezone, "UTC")
    start = datetime.fromtimestamp(after_us / 1_000_000, tz)
    schedule = croniter(trigger.cron, start)
    out: list[int] = []
    while len(out) < MAX_RUNS_PER_TICK:
        try:
            moment = to_us(schedule.get_next(datetime))
        except CroniterBadDateError:  # no such date ("0 0 30 2 *"): it never fires
            break
        if moment > now_us:
            break
        if moment > after_us:
            out.append(moment)
    return out


def ever_fires(trigger: BroadcastTrigger, now_us: int) -> bool:
    """Does the broadcast's cron fire at some time after `now_us`?"""
    tz = user_zone(trigger.timezone, "UTC")
    try:
        croniter(trigger.cron, datetime.fromtimestamp(now_us / 1_000_000, tz)).get_next(datetime)
    except CroniterBadDateError:
        return False
    return True


def run_change_id(campaign_id: str, fire_us: int) -> str:
    """The change id of one broadcast run (the same on every retry of the run)."""
    return f"broadcast:{campaign_id}:{fire_us}"
