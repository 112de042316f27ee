"""Opaque page tokens (an offset, base64-wrapped) and page sizes."""

from __future__ import annotations

import base64
import binascii

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def page_size(requested: int) -> int:
    return DEFAULT_PAGE_SIZE if requested <= 0 else min(requested, MAX_PAGE_SIZE)


def encode(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o{offset}".encode()).decode()


def decode(token: str) -> int | None:
    """The offset in a token ("" is 0); None for a token we did not issue."""
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if not text.startswith("o") or not text[1:].isdigit():
        return None
    return int(text[1:])
