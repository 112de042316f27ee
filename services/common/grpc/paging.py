"""Opaque page tokens (AIP-158): clients pass back what they got, never build one.

A token is base64url JSON of a cursor whose keys and value types each RPC declares.
Decoding checks them all, so a forged or foreign token (`{"after": "x"}` where a
sequence number belongs, `{"offset": 2**63}`, another RPC's token) is a clean
`BadPageToken`, never an error in a query. Every query still filters by the caller's
app, so another app's token only ever selects a position among the caller's own data.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import orjson

from services.common.text import name_problem

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_TOKEN_CHARS = 4096
# Cursor numbers (offsets, sequence numbers, ids) stay far below PostgreSQL's bigint limit.
MAX_CURSOR_INT = 2**62
MAX_CURSOR_STR = 1024
_NOT_OURS = "not a page token returned by this API"

CursorFields = Mapping[str, type[int] | type[str]]


class BadPageToken(ValueError):
    pass


def encode_token(cursor: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(cursor)).decode().rstrip("=")


def decode_token(token: str, fields: CursorFields) -> dict[str, Any] | None:
    """The cursor in `token` (None for an empty token), each field of its declared type;
    BadPageToken if it is not a token this RPC issued."""
    if not token:
        return None
    if len(token) > MAX_TOKEN_CHARS:
        raise BadPageToken(_NOT_OURS)
    try:
        padded = token + "=" * (-len(token) % 4)
        cursor = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, orjson.JSONDecodeError, ValueError) as error:
        raise BadPageToken(_NOT_OURS) from error
    if not isinstance(cursor, dict) or set(cursor) != set(fields):
        raise BadPageToken(_NOT_OURS)
    for name, kind in fields.items():
        if not _valid(cursor[name], kind):
            raise BadPageToken(_NOT_OURS)
    return cursor


def _valid(value: object, kind: type) -> bool:
    if kind is int:
        return type(value) is int and 0 <= value <= MAX_CURSOR_INT
    return type(value) is str and len(value) <= MAX_CURSOR_STR and name_problem(value) is None


def page_size(requested: int) -> int:
    if requested <= 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)
