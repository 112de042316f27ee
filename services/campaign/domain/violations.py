"""A bad field of a request, and the field-level judgements campaign checks share.

Paths are those of the proto fields relative to the campaign (e.g.
"variants[1].template.body"), so an API error can name them as they were sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.campaign.domain.text import control_problem

DAY = 86_400.0
# Longest waits and windows a campaign may ask for, seconds.
MAX_DELAY_S = 366 * DAY
MAX_WINDOW_S = 366 * DAY
MAX_COOLDOWN_S = 3650 * DAY
MAX_TRIGGER_AGE_S = 3650 * DAY
# Times (send, start, end) lie between 2000-01-01 and this far ahead of now.
EARLIEST_US = 946_684_800 * 1_000_000
MAX_AHEAD_US = int(3652 * DAY) * 1_000_000


@dataclass(frozen=True)
class Violation:
    field: str
    description: str


def check_states(field: str, names: tuple[str, ...], known: tuple[str, ...], out: list) -> None:
    for i, name in enumerate(names):
        if name not in known:
            out.append(Violation(f"{field}[{i}]", "unknown or unspecified value"))


def check_time(field: str, at_us: int | None, now_us: int, out: list[Violation]) -> None:
    if at_us is not None and not EARLIEST_US <= at_us <= now_us + MAX_AHEAD_US:
        out.append(Violation(field, "must lie between 2000-01-01 and 10 years from now"))


def check_duration(
    field: str, value_s: float, most_s: float, out: list[Violation], *, positive: bool = False
) -> None:
    if value_s < 0 or (positive and value_s == 0):
        out.append(Violation(field, "must be positive" if positive else "must not be negative"))
    elif value_s > most_s:
        out.append(Violation(field, f"at most {most_s / DAY:.0f} days"))


def check_text(field: str, text: str, out: list[Violation], *, multiline: bool = False) -> None:
    problem = control_problem(text, multiline=multiline)
    if problem:
        out.append(Violation(field, problem))
