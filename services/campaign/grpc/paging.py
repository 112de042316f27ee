"""Offset cursors in the shared opaque page tokens (services.common.grpc.paging)."""

from __future__ import annotations

from services.common.grpc.paging import BadPageToken, decode_token, encode_token, page_size

__all__ = ["decode", "encode", "page_size"]


def encode(offset: int) -> str:
    return encode_token({"offset": offset})


def decode(token: str) -> int | None:
    """The offset in a token ("" is 0); None for a token we did not issue (any other
    shape, a non-integer, a negative or an absurdly large offset)."""
    try:
        cursor = decode_token(token, {"offset": int})
    except BadPageToken:
        return None
    return 0 if cursor is None else int(cursor["offset"])
