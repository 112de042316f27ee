"""Who the simulated users are: cadence, home city, device, install time, contacts, consent.

Each user draws from a random generator of its own, seeded by (seed, index), so a
user is the same whatever the population size or the order users are generated in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from services.cli.simulator.cities import CITIES, City
from services.cli.simulator.model import US_PER_S, Behaviour, Place, SimIdentify

# Relative chance that a session starts in each local hour (evenings busiest).
HOUR_WEIGHTS = (
    *(0.2, 0.1, 0.05, 0.05, 0.05, 0.1, 0.4, 0.9, 1.2, 1.0, 0.9, 1.0),  # 00-11 h
    *(1.3, 1.2, 0.9, 0.9, 1.0, 1.2, 1.5, 1.8, 2.0, 1.9, 1.3, 0.6),  # 12-23 h
)
_HOURS = tuple(range(24))


@dataclass(frozen=True)
class Archetype:
    """A usage cadence: mean days between sessions, per-session chance of leaving, and
    how much the gap grows each session (the drift towards dormancy)."""

    name: str
    mean_gap_days: float
    churn_hazard: float
    decay: float


DAILY = Archetype("daily", 1.0, 0.012, 1.01)
WEEKLY = Archetype("weekly", 6.0, 0.05, 1.04)
OCCASIONAL = Archetype("occasional", 18.0, 0.12, 1.08)


@dataclass(frozen=True)
class Persona:
    index: int
    user_id: str
    archetype: Archetype
    city: City
    place: Place
    install_us: int
    # how likely this user buys (1 = typical) and how much more they spend (log scale)
    buyer: float
    spend_shift: float


def user_rng(seed: int, index: int) -> random.Random:
    return random.Random(f"cohortflow-simulator/{seed}/{index}")


def at_local_hour(near_us: int, timezone: str, rng: random.Random) -> int:
    """A moment on the local date of `near_us`, at an hour drawn from HOUR_WEIGHTS."""
    zone = ZoneInfo(timezone)
    day = datetime.fromtimestamp(near_us / US_PER_S, zone).date()
    hour = rng.choices(_HOURS, HOUR_WEIGHTS)[0]
    local = datetime(day.year, day.month, day.day, tzinfo=zone) + timedelta(
        hours=hour, seconds=rng.randrange(3600)
    )
    return int(local.timestamp()) * US_PER_S + rng.randrange(US_PER_S)


def _archetype(rng: random.Random, behaviour: Behaviour) -> Archetype:
    draw = rng.random()
    if draw < behaviour.daily_share:
        return DAILY
    if draw < behaviour.daily_share + behaviour.weekly_share:
        return WEEKLY
    return OCCASIONAL


def persona(
    seed: int, index: int, user_id: str, start_us: int, end_us: int, behaviour: Behaviour
) -> tuple[Persona, random.Random]:
    """User `index` and the generator that goes on to draw its behaviour."""
    rng = user_rng(seed, index)
    archetype = _archetype(rng, behaviour)
    city = rng.choices(CITIES, [c.weight for c in CITIES])[0]
    ios = rng.random() < 0.45
    place = Place(
        platform="ios" if ios else "android",
        os=rng.choice(("iOS 17.6", "iOS 18.2"))
        if ios
        else rng.choice(("Android 13", "Android 14")),
        app_version=rng.choice(("4.1.0", "4.2.0", "4.2.1")),
        locale=city.locale,
        timezone=city.timezone,
        country=city.country,
        city=city.name,
        latitude=round(city.latitude + rng.uniform(-0.05, 0.05), 5),
        longitude=round(city.longitude + rng.uniform(-0.05, 0.05), 5),
    )
    # Installs arrive over the whole period, more of them early (a launch).
    offset = int((end_us - start_us) * rng.random() ** 1.5)
    install = min(max(at_local_hour(start_us + offset, city.timezone, rng), start_us), end_us - 1)
    return (
        Persona(
            index=index,
            user_id=user_id,
            archetype=archetype,
            city=city,
            place=place,
            install_us=install,
            buyer=rng.lognormvariate(0.0, 0.5),
            spend_shift=rng.gauss(0.0, 0.3),
        ),
        rng,
    )


def _consent(rng: random.Random, granted: float, denied: float) -> bool | None:
    draw = rng.random()
    return True if draw < granted else False if draw < granted + denied else None


def sign_up(p: Persona, rng: random.Random, event_id: str, at_us: int) -> SimIdentify:
    """The Identify of a user signing up: traits, contacts and a mix of consents."""
    email = f"{p.user_id}@example.com" if rng.random() < 0.75 else ""
    phone = f"+{p.city.dial_code}{rng.randrange(10**8, 10**9)}" if rng.random() < 0.4 else ""
    push = f"{rng.getrandbits(128):032x}" if rng.random() < 0.65 else ""
    consents: dict[str, bool | None] = {"in_app": _consent(rng, 0.1, 0.03)}
    if email:
        consents["email"] = _consent(rng, 0.55, 0.2)
    if push:
        consents["push"] = _consent(rng, 0.6, 0.25)
    if phone:
        consents["sms"] = _consent(rng, 0.25, 0.15)
    return SimIdentify(
        event_id=event_id,
        user_id=p.user_id,
        time_us=at_us,
        traits={
            "plan": "premium" if rng.random() < 0.1 else "free",
            "signup_source": rng.choices(
                ("organic", "paid_social", "search", "referral"), (5, 3, 2, 1)
            )[0],
            "age_band": rng.choices(("18-24", "25-34", "35-44", "45-54", "55+"), (3, 4, 3, 2, 1))[
                0
            ],
        },
        email=email,
        phone=phone,
        push_token=push,
        consents={channel: c for channel, c in consents.items() if c is not None},
        timezone=p.city.timezone,
        country=p.city.country,
        city=p.city.name,
        latitude=p.place.latitude,
        longitude=p.place.longitude,
    )
