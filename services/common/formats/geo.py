"""Country and language names of the source tools as the codes cohortflow keeps.

cohortflow keeps ISO 3166-1 alpha-2 country codes and BCP 47 language tags. Segment's
`context.location.country` and Amplitude's `country` are names from a GeoIP database
("United States", "Turkey"); Amplitude's `language` is a name ("English"). A name is
looked up in the ISO 3166 / ISO 639 tables (pycountry), without regard to case or
accents, then in a short table of the names GeoIP databases use that ISO does not; a
name found nowhere ("Europe", "Anonymous Proxy") is left out rather than guessed.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Any

import pycountry
from cohortflow.types.v1 import types_pb2

from services.common.formats.fields import FieldError, number

_CODE = re.compile(r"[A-Za-z]{2}")
_TAG = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*")
# No country or language name is longer; longer text is looked up nowhere (nor cached).
_LONGEST_NAME = 80
# Names GeoIP databases and analytics tools use that ISO 3166 does not (or no longer).
_GEOIP_NAMES = {
    "turkey": "TR",
    "russia": "RU",
    "palestine": "PS",
    "micronesia": "FM",
    "brunei": "BN",
    "macau": "MO",
    "vatican": "VA",
    "vatican city": "VA",
    "ivory coast": "CI",
    "cape verde": "CV",
    "swaziland": "SZ",
    "macedonia": "MK",
    "kosovo": "XK",
    "democratic republic of the congo": "CD",
    "dr congo": "CD",
    "republic of the congo": "CG",
    "burma": "MM",
    "east timor": "TL",
    "saint martin": "MF",
    "uk": "GB",
    "great britain": "GB",
    "falkland islands": "FK",
    "u.s. virgin islands": "VI",
    "us virgin islands": "VI",
    "st kitts and nevis": "KN",
    "south korea": "KR",
    "north korea": "KP",
}


def _folded(name: str) -> str:
    decomposed = unicodedata.normalize("NFKD", name.strip().casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.removeprefix("the ").split())


@lru_cache(maxsize=1)
def _countries() -> dict[str, str]:
    index: dict[str, str] = {}
    for country in pycountry.countries:
        for attribute in ("name", "official_name", "common_name", "alpha_3"):
            value = getattr(country, attribute, None)
            if value:
                index.setdefault(_folded(value), country.alpha_2)
    for name, code in _GEOIP_NAMES.items():
        index.setdefault(name, code)
    return index


def country_code(name: str) -> str:
    """The alpha-2 code of a country name or code, or "" when it names no country."""
    name = name.strip()
    if _CODE.fullmatch(name):
        return name.upper()
    return _countries().get(_folded(name), "") if len(name) <= _LONGEST_NAME else ""


def language_tag(name: str) -> str:
    """A BCP 47 tag for a language tag or name ("en-US" stays, "English" -> "en"), or ""."""
    name = name.strip()
    if _TAG.fullmatch(name):
        return name.replace("_", "-")
    return _languages().get(_folded(name), "") if len(name) <= _LONGEST_NAME else ""


@lru_cache(maxsize=1)
def _languages() -> dict[str, str]:
    index: dict[str, str] = {}
    for language in pycountry.languages:
        tag = getattr(language, "alpha_2", "") or language.alpha_3
        for attribute in ("name", "common_name", "inverted_name"):
            value = getattr(language, attribute, None)
            if value:
                index.setdefault(_folded(value), tag)
    for language in pycountry.languages:  # "Modern Greek (1453-)" is "Greek" too
        if getattr(language, "alpha_2", ""):
            short = _folded(language.name.split(" (")[0].split(",")[0]).removeprefix("modern ")
            index.setdefault(short, language.alpha_2)
    return index


def coordinates(latitude: Any, longitude: Any, paths: tuple[str, str]) -> types_pb2.LatLng | None:
    """A point from source latitude and longitude (numbers or numeric strings), both or
    neither; None when neither is given."""
    lat, lng = number(latitude, paths[0]), number(longitude, paths[1])
    if lat is None and lng is None:
        return None
    if lat is None or lng is None:
        missing = paths[0] if lat is None else paths[1]
        raise FieldError(missing, f"is needed with {paths[1] if lat is None else paths[0]}")
    if not -90 <= lat <= 90:
        raise FieldError(paths[0], "must be between -90 and 90 degrees")
    if not -180 <= lng <= 180:
        raise FieldError(paths[1], "must be between -180 and 180 degrees")
    return types_pb2.LatLng(latitude=lat, longitude=lng)


def put_coordinates(
    into: types_pb2.LatLng, latitude: Any, longitude: Any, paths: tuple[str, str]
) -> None:
    """The point of `coordinates` into `into` (a message field), if there is one."""
    point = coordinates(latitude, longitude, paths)
    if point is not None:
        into.CopyFrom(point)
