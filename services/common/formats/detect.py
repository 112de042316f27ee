"""Which format a file is in, told from its first objects, with the evidence when unsure.

Each format has a guess: a function of one decoded object that returns the keys showing
the object is in that format, or "" when it is not. `decide` looks at the first objects
of a file: when every one that any guess claims is claimed by the same single format,
that is the file's format; when objects point at different formats (or one object at
several) the answer is `Undecided`, which says which line looks like which format and
why. No claim at all is None: the caller falls back to its own default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from services.common.formats import segment

Guess = Callable[[dict[str, Any]], str]


class Undecided(ValueError):
    """The first objects do not point at one format; the message shows the evidence."""


def looks_like_segment(source: dict[str, Any]) -> str:
    kind = source.get("type")
    if not isinstance(kind, str) or kind not in segment.TYPES:
        return ""
    ids = [key for key in ("messageId", "userId", "anonymousId", "previousId") if key in source]
    return f"type {kind!r}" + "".join(f", {key}" for key in ids)


def looks_like_mixpanel(source: dict[str, Any]) -> str:
    properties = source.get("properties")
    if (
        "event" not in source
        or not isinstance(properties, dict)
        or set(source)
        - {
            "event",
            "properties",
        }
    ):
        return ""
    keys = [f"properties.{key}" for key in ("time", "distinct_id", "$insert_id")]
    present = [key for key in keys if key.removeprefix("properties.") in properties]
    return ", ".join(["only event and properties", *present])


def looks_like_amplitude(source: dict[str, Any]) -> str:
    if "event_type" not in source:
        return ""
    keys = ("event_type", "event_time", "device_id", "uuid", "$insert_id", "amplitude_id")
    return ", ".join(key for key in keys if key in source)


GUESSES: dict[str, Guess] = {
    "segment": looks_like_segment,
    "mixpanel": looks_like_mixpanel,
    "amplitude": looks_like_amplitude,
}


def decide(
    samples: Iterable[tuple[int, dict[str, Any]]], guesses: Mapping[str, Guess]
) -> str | None:
    """The one format the (line, object) samples point at, None if none; Undecided if more."""
    first_line: dict[str, tuple[int, str]] = {}
    for line, source in samples:
        claims = {name: why for name, guess in guesses.items() if (why := guess(source))}
        if len(claims) > 1:
            shown = "; ".join(f"{name} ({why})" for name, why in claims.items())
            raise Undecided(f"line {line} looks like more than one format: {shown}")
        for name, why in claims.items():
            first_line.setdefault(name, (line, why))
    if len(first_line) > 1:
        shown = ", ".join(
            f"line {line} like {name} ({why})" for name, (line, why) in first_line.items()
        )
        raise Undecided(f"the lines look like different formats: {shown}")
    return next(iter(first_line), None)
