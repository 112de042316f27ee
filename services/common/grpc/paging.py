"""Opaque page tokens (AIP-158): clients pass back what they got, never build one."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


class BadPageToken(ValueError):
    pass


def encode_token(cursor: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(cursor)).decode().rstrip("=")


def decode_token(token: str, expected_keys: set[str]) -> dict[str, Any] | None:
    """The cursor in `token` (None for an empty token); BadPageToken if it is not ours."""
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        cursor = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, orjson.JSONDecodeError, ValueError) as error:
        msg = "not a page token returned by this API"
        raise BadPageToken(msg) from error
    if not isinstance(cursor, dict) or set(cursor) != expected_keys:
        msg = "not a page token returned by this API"
        raise BadPageToken(msg)
    return cursor


def page_size(requested: int) -> int:
    if requested <= 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)
