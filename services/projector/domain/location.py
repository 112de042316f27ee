"""Where a user is: the best location known, from Identify and from event context.

A location is observed by Identify (its `location`: where the user lives or was
last seen) and by every event whose context names a country, a city or
coordinates. Each observation is dated by its event time. The best location is
the most recent observation, completed by older ones that agree with it:

- The newest observation decides: its country, city and coordinates are used.
- A field it lacks (coordinates are one field: latitude and longitude together)
  is filled from an older observation only if that one agrees: both name at
  least one of country and city, and no country or city named by both differs
  (letters compared case-insensitively). So a later Identify of "DE, Berlin"
  keeps the coordinates an earlier event in Berlin carried, while a later
  "FR, Paris" (or a bare city of Munich) drops them: the user moved, and the
  old coordinates would place them wrongly.
- An observation with coordinates but no country or city agrees with nothing
  older, and nothing newer borrows from it unless it names a place itself.
- Ties in time go to Identify.

The same rule merges successive observations of one kind (each Identify with the
profile location so far, each event with the place so far), so a profile is the
fold of its observations in time order, whatever order they were folded in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.projector.domain.user import User

PLACE_KEYS = ("country", "city", "latitude", "longitude")
_NAMES = ("country", "city")


def observed(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The location fields of an Identify location or an event context (others dropped)."""
    out: dict[str, Any] = {}
    for name in _NAMES:
        value = raw.get(name)
        if isinstance(value, str) and value:
            out[name] = value
    lat, lng = raw.get("latitude"), raw.get("longitude")
    if _coordinate(lat, 90) and _coordinate(lng, 180):
        out["latitude"], out["longitude"] = float(lat), float(lng)  # type: ignore[arg-type]
    return out


def _coordinate(value: Any, limit: float) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and -limit <= value <= limit
    )


def agrees(newer: Mapping[str, Any], older: Mapping[str, Any]) -> bool:
    """Whether `older` describes the same place as `newer`, as far as both say."""
    shared = [n for n in _NAMES if n in newer and n in older]
    return bool(shared) and all(
        str(newer[n]).casefold() == str(older[n]).casefold() for n in shared
    )


def refine(newer: Mapping[str, Any], older: Mapping[str, Any]) -> dict[str, Any]:
    """`newer`, completed by the fields of `older` it lacks when the two agree."""
    out = dict(newer)
    if older and agrees(newer, older):
        for name in _NAMES:
            if name not in out and name in older:
                out[name] = older[name]
        if "latitude" not in out and "latitude" in older:
            out["latitude"], out["longitude"] = older["latitude"], older["longitude"]
    return out


def fold(
    current: Mapping[str, Any], current_us: int | None, seen: Mapping[str, Any], seen_us: int
) -> dict[str, Any]:
    """`current` (observed at `current_us`) after one more observation `seen` at `seen_us`."""
    if seen == current:
        return dict(current)  # the usual case: the same place again
    if not current or current_us is None or seen_us >= current_us:
        return refine(seen, current)
    return refine(current, seen)


def best(
    profile: Mapping[str, Any],
    profile_us: int | None,
    place: Mapping[str, Any],
    place_us: int | None,
) -> dict[str, Any]:
    """The best location known of a user, from the profile's (Identify) and the events'."""
    if not place:
        return dict(profile)
    if not profile:
        return dict(place)
    if place_first(place_us, profile_us):
        return refine(place, profile)
    return refine(profile, place)


def place_first(place_us: int | None, profile_us: int | None) -> bool:
    """Whether the events' place is newer than the profile's location (ties: the profile)."""
    return place_us is not None and (profile_us is None or place_us > profile_us)


def of_user(user: User) -> tuple[str, str, float | None, float | None]:
    """(country, city, latitude, longitude) geo conditions see: the best location known."""
    where = best(user.location, user.location_us, user.place, user.place_us)
    return (
        str(where.get("country", "")),
        str(where.get("city", "")),
        where.get("latitude"),
        where.get("longitude"),
    )


def merge_into(user: User, other: User) -> None:
    """Fold the observations of `other` (an anonymous history) into `user`'s."""
    if other.place and other.place_us is not None:
        user.place = fold(user.place, user.place_us, other.place, other.place_us)
        user.place_us = max(user.place_us or other.place_us, other.place_us)
    if other.location and other.location_us is not None:
        user.location = fold(user.location, user.location_us, other.location, other.location_us)
        user.location_us = max(user.location_us or other.location_us, other.location_us)


def observe_place(user: User, context: Mapping[str, Any] | None, when: int) -> bool:
    """Fold an event's context (at `when`) into the user's place; True if that moved the
    best location known (what geo conditions see)."""
    if not context or not ("country" in context or "latitude" in context or "city" in context):
        return False
    seen = observed(context)
    if not seen:
        return False
    moved = False
    place = fold(user.place, user.place_us, seen, when)
    place_us = when if user.place_us is None else max(user.place_us, when)
    if place != user.place or (
        user.location
        and place_first(user.place_us, user.location_us) != place_first(place_us, user.location_us)
    ):
        where = of_user(user)
        user.place, user.place_us = place, place_us
        moved = of_user(user) != where
    user.place_us = place_us
    return moved
