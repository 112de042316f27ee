"""Rules for what ingest accepts. Each rule names the field that broke it.

Pure functions of a draft, the server's clock reading and the limits, so they
are unit tested without a server.
"""

from __future__ import annotations

import json
import math
import re
from functools import lru_cache
from zoneinfo import available_timezones

from services.common.text import is_clean_text, name_problem, text_problem
from services.eventlog.events import SYSTEM_EVENT_NAMES
from services.ingest.domain.model import (
    ContextDraft,
    Coordinates,
    EventDraft,
    IdentifyDraft,
    Instant,
    InvalidValue,
    Limits,
    LocationDraft,
    Value,
    Violation,
)

_EVENT_NAME = re.compile(r"[A-Za-z0-9$][A-Za-z0-9 _.:/()&'+\-]*")
_PROPERTY_KEY = re.compile(r"[A-Za-z$][A-Za-z0-9_.$\-]*")
_LOCALE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*")
_COUNTRY = re.compile(r"[A-Za-z]{2}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PHONE = re.compile(r"\+[1-9][0-9]{6,14}")
_MAX_CONTEXT_STRING = 128
_MAX_EMAIL = 254
_MAX_PUSH_TOKEN = 4096
_EMPTY_CONTEXT = ContextDraft()


# Property keys seen valid before: keys repeat across events, the regex need not.
_VALID_KEYS: set[str] = set()
_VALID_KEYS_MAX = 50_000


def _is_valid_key(key: str) -> bool:
    if key in _VALID_KEYS:
        return True
    if not _PROPERTY_KEY.fullmatch(key):
        return False
    if len(_VALID_KEYS) < _VALID_KEYS_MAX:
        _VALID_KEYS.add(key)
    return True


@lru_cache(maxsize=1)
def _timezones() -> frozenset[str]:
    return frozenset(available_timezones())


def is_timezone(name: str) -> bool:
    return name in _timezones()


def _printable(text: str) -> bool:
    return text.isprintable()


def _key_path(field: str, key: str) -> str:
    """`properties["key"]`, the key escaped JSON-style (so a NUL shows as \\u0000)."""
    return f"{field}[{json.dumps(key, ensure_ascii=False)}]"


def check_event(draft: EventDraft, now_us: int, limits: Limits) -> list[Violation]:
    """Every violation of a Track event (empty when it may be stored)."""
    out: list[Violation] = []
    _check_event_id(draft.event_id, limits, out)
    _check_identity(draft.user_id, draft.anonymous_id, limits, out)
    _check_name(draft.name, limits, out)
    _check_time("event_time", draft.event_time_us, now_us, limits, out)
    size = _check_values("properties", draft.properties, now_us, limits, out)
    if draft.context != _EMPTY_CONTEXT:
        _check_context(draft.context, out)
    if not out and size + 256 + len(draft.event_id) + len(draft.user_id) > limits.max_event_bytes:
        out.append(
            Violation(
                "properties",
                f"the event is larger than {limits.max_event_bytes} bytes; send fewer or"
                " shorter properties",
            )
        )
    return out


def check_identify(draft: IdentifyDraft, now_us: int, limits: Limits) -> list[Violation]:
    """Every violation of an Identify call (empty when it may be stored)."""
    out: list[Violation] = []
    _check_event_id(draft.event_id, limits, out)
    _check_identity(draft.user_id, draft.anonymous_id, limits, out)
    _check_time("event_time", draft.event_time_us, now_us, limits, out)
    _check_values("traits", draft.traits, now_us, limits, out)
    if draft.email and (problem := name_problem(draft.email)):
        out.append(Violation("contact.email", problem))
    elif draft.email and (len(draft.email) > _MAX_EMAIL or not _EMAIL.fullmatch(draft.email)):
        out.append(Violation("contact.email", "must be an email address like name@example.com"))
    if draft.phone and not _PHONE.fullmatch(draft.phone):
        out.append(Violation("contact.phone", "must be an E.164 number like +4915112345678"))
    if draft.push_token and (
        len(draft.push_token) > _MAX_PUSH_TOKEN or not _printable(draft.push_token)
    ):
        out.append(
            Violation(
                "contact.push_token",
                f"must be printable and at most {_MAX_PUSH_TOKEN} characters",
            )
        )
    seen = set()
    for i, consent in enumerate(draft.consents):
        if consent.channel is None:
            out.append(Violation(f"consents[{i}].channel", "must name a channel"))
        elif consent.channel in seen:
            out.append(
                Violation(
                    f"consents[{i}].channel",
                    f"{consent.channel.value} is given more than once",
                )
            )
        else:
            seen.add(consent.channel)
        if consent.granted is None:
            out.append(Violation(f"consents[{i}].status", "must be GRANTED or DENIED"))
    if draft.timezone and not is_timezone(draft.timezone):
        out.append(
            Violation("timezone", f"unknown IANA time zone {draft.timezone!r}"),
        )
    if draft.location is not None:
        _check_location("location", draft.location, out)
    return out


def _check_event_id(event_id: str, limits: Limits, out: list[Violation]) -> None:
    if not event_id:
        out.append(Violation("event_id", "is required: a client-generated id, unique per app"))
    elif len(event_id) > limits.max_id_length:
        out.append(Violation("event_id", f"must be at most {limits.max_id_length} characters"))
    elif not event_id.isascii() or not event_id.isprintable() or " " in event_id:
        out.append(Violation("event_id", "must be printable ASCII without spaces"))


def _check_identity(user_id: str, anonymous_id: str, limits: Limits, out: list[Violation]) -> None:
    if not user_id and not anonymous_id:
        out.append(Violation("user_id", "user_id or anonymous_id is required"))
        return
    for name, value in (("user_id", user_id), ("anonymous_id", anonymous_id)):
        if not value:
            continue
        if len(value) > limits.max_user_id_length:
            out.append(Violation(name, f"must be at most {limits.max_user_id_length} characters"))
        elif problem := name_problem(value):
            out.append(Violation(name, problem))
        elif not value.isprintable() or value.strip() != value:
            out.append(Violation(name, "must be printable, without leading or trailing spaces"))


def _check_name(name: str, limits: Limits, out: list[Violation]) -> None:
    if not name:
        out.append(Violation("name", 'is required, e.g. "Added to Cart"'))
    elif len(name) > limits.max_name_length:
        out.append(Violation("name", f"must be at most {limits.max_name_length} characters"))
    elif name.startswith("$") and name not in SYSTEM_EVENT_NAMES:
        out.append(
            Violation(
                "name",
                f"{name!r} is not a system event; names starting with '$' are reserved"
                f" ({', '.join(sorted(SYSTEM_EVENT_NAMES))})",
            )
        )
    elif not _EVENT_NAME.fullmatch(name) or name.endswith(" "):
        out.append(
            Violation(
                "name",
                "must start with a letter or digit and use only letters, digits, spaces"
                " and _ . : / ( ) & ' + -",
            )
        )


def _check_time(
    field: str, time_us: int | None, now_us: int, limits: Limits, out: list[Violation]
) -> None:
    if time_us is None:
        return
    if time_us > now_us + limits.max_future_skew_us:
        hours = limits.max_future_skew_us // 3_600_000_000
        out.append(Violation(field, f"is more than {hours} h in the future"))
    elif time_us < limits.min_time_us or time_us < now_us - limits.max_age_us:
        days = limits.max_age_us // 86_400_000_000
        out.append(Violation(field, f"is before 2000-01-01 or more than {days} days in the past"))


def _check_values(
    field: str, values: dict[str, Value], now_us: int, limits: Limits, out: list[Violation]
) -> int:
    """Check properties or traits; returns their approximate stored size in bytes."""
    if len(values) > limits.max_properties:
        out.append(
            Violation(field, f"at most {limits.max_properties} are allowed, got {len(values)}")
        )
        return 0
    size = 0
    max_string = limits.max_string_length
    for key, value in values.items():
        if len(key) > limits.max_property_key_length or not _is_valid_key(key):
            out.append(
                Violation(
                    _key_path(field, key),
                    f"key must start with a letter or $, use letters, digits and _ . $ -,"
                    f" and be at most {limits.max_property_key_length} characters",
                )
            )
            continue
        size += len(key) + 4
        # Fast path for the common scalars; everything else gets the full check.
        kind = type(value)
        if kind is str and len(value) <= max_string and is_clean_text(value):  # type: ignore[arg-type]
            size += len(value) + 2  # type: ignore[arg-type]
        elif kind is float and math.isfinite(value):  # type: ignore[arg-type]
            size += 12
        elif kind is bool:
            size += 5
        elif isinstance(value, list):
            _check_list(_key_path(field, key), value, now_us, limits, out)
            size += sum(len(v) + 2 if isinstance(v, str) else 12 for v in value)
        else:
            _check_scalar(_key_path(field, key), value, now_us, limits, out)
            size += 12
    return size


def _check_list(path: str, items: list, now_us: int, limits: Limits, out: list[Violation]) -> None:
    if len(items) > limits.max_list_length:
        out.append(Violation(path, f"lists hold at most {limits.max_list_length} values"))
        return
    kinds = {_kind(item) for item in items}
    if len(kinds) > 1:
        out.append(Violation(path, "list values must all be of one kind"))
        return
    for i, item in enumerate(items):
        _check_scalar(f"{path}[{i}]", item, now_us, limits, out)


def _kind(value: object) -> str:
    # bool before float: a bool is an int in Python, never a number here.
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, float | int):
        return "number"
    return type(value).__name__


def _check_scalar(
    path: str, value: object, now_us: int, limits: Limits, out: list[Violation]
) -> None:
    if isinstance(value, InvalidValue):
        out.append(Violation(path, value.reason))
    elif isinstance(value, str):
        if len(value) > limits.max_string_length:
            out.append(
                Violation(path, f"strings are at most {limits.max_string_length} characters")
            )
        elif problem := text_problem(value):
            out.append(Violation(path, problem))
    elif isinstance(value, bool):
        return
    elif isinstance(value, float | int):
        if not math.isfinite(value):
            out.append(Violation(path, "numbers must be finite (no NaN or infinity)"))
    elif isinstance(value, Instant):
        _check_time(path, value.us, now_us, limits, out)


def _check_context(context: ContextDraft, out: list[Violation]) -> None:
    for name in ("platform", "os", "app_version", "city"):
        value = getattr(context, name)
        if len(value) > _MAX_CONTEXT_STRING or not _printable(value):
            out.append(
                Violation(
                    f"context.{name}",
                    f"must be printable and at most {_MAX_CONTEXT_STRING} characters",
                )
            )
    if context.locale and not _LOCALE.fullmatch(context.locale):
        out.append(Violation("context.locale", "must be a BCP 47 language tag like de-DE"))
    if context.timezone and not is_timezone(context.timezone):
        out.append(Violation("context.timezone", f"unknown IANA time zone {context.timezone!r}"))
    if context.country and not _COUNTRY.fullmatch(context.country):
        out.append(Violation("context.country", "must be an ISO 3166-1 alpha-2 code like DE"))
    if context.location is not None:
        _check_coordinates("context.location", context.location, out)


def _check_location(field: str, location: LocationDraft, out: list[Violation]) -> None:
    if location.country and not _COUNTRY.fullmatch(location.country):
        out.append(Violation(f"{field}.country", "must be an ISO 3166-1 alpha-2 code like DE"))
    if len(location.city) > _MAX_CONTEXT_STRING or not _printable(location.city):
        out.append(
            Violation(
                f"{field}.city", f"must be printable and at most {_MAX_CONTEXT_STRING} characters"
            )
        )
    if location.coordinates is not None:
        _check_coordinates(f"{field}.coordinates", location.coordinates, out)


def _check_coordinates(field: str, point: Coordinates, out: list[Violation]) -> None:
    if not (math.isfinite(point.latitude) and -90.0 <= point.latitude <= 90.0):
        out.append(Violation(f"{field}.latitude", "must be between -90 and 90 degrees"))
    if not (math.isfinite(point.longitude) and -180.0 <= point.longitude <= 180.0):
        out.append(Violation(f"{field}.longitude", "must be between -180 and 180 degrees"))
