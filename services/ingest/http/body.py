"""Reading a request body: its media type, its encoding, its size, then its JSON.

The size limit holds before anything is parsed: a declared Content-Length over it is
refused before the body is read, a body that grows past it while read (chunked) is
refused there, and a gzip body is inflated at most to the limit. What the body holds is
judged afterwards, call by call, by the Segment mapping and ingest's rules.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import orjson
from starlette.requests import Request

from services.ingest.http.refusal import Refusal, bad_field

MEDIA_TYPE = "application/json"
# A gzip body may be a little larger than what it holds (headers, incompressible data).
_GZIP_SLACK = 1024
# Integers of more digits are read as floats (as orjson reads integers past 64 bits).
_INT_DIGITS = 18


def too_large(limit: int, what: str) -> Refusal:
    message = f"is larger than {limit} bytes, the most {what} may carry"
    return Refusal(413, "size", f"the body {message}", [("body", message)])


def check_headers(request: Request) -> bool:
    """Refuse a body that is not JSON, or encoded other than gzip; True for gzip."""
    given = request.headers.get("content-type", "")
    if given.split(";", 1)[0].strip().lower() != MEDIA_TYPE:
        why = f"is {given[:60]!r}" if given else "is missing"
        raise Refusal(
            415,
            "content_type",
            f"send the body as JSON with Content-Type: {MEDIA_TYPE}",
            [("Content-Type", f"{why}; expected {MEDIA_TYPE}")],
        )
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return False
    if encoding == "gzip":
        return True
    raise Refusal(
        415,
        "encoding",
        "send the body as it is or gzip-compressed",
        [("Content-Encoding", f"is {encoding[:40]!r}; expected gzip or none")],
    )


async def read_body(request: Request, limit: int, what: str) -> bytes:
    """The body, inflated when gzip; 413 past `limit` bytes (of JSON)."""
    gzip = check_headers(request)
    wire_limit = limit + _GZIP_SLACK if gzip else limit
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise bad_field("Content-Length", f"{declared[:40]!r} is not a number of bytes")
        if int(declared) > wire_limit:
            raise too_large(limit, what)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > wire_limit:
            raise too_large(limit, what)
        chunks.append(chunk)
    raw = b"".join(chunks)
    return _inflate(raw, limit, what) if gzip else raw


def _inflate(raw: bytes, limit: int, what: str) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(raw, limit + 1)
    except zlib.error as error:
        raise bad_field("body", f"is not gzip data ({error})", code="encoding") from None
    if len(data) > limit:
        raise too_large(limit, what)
    if not inflater.eof:
        raise bad_field("body", "ends before its gzip data does", code="encoding")
    return data


def parse_json(data: bytes) -> Any:
    """The JSON value of `data`; 400 naming where it is not JSON.

    Numbers past a double (1e400) and NaN / Infinity (Python's json.dumps writes them)
    are read as infinite floats, so ingest's rules refuse them naming their field.
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as error:
        problem = str(error)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise bad_field(
            "body", f"is not UTF-8: byte {error.start} is {data[error.start]:#04x}", code="json"
        ) from None
    try:
        value = json.loads(text, parse_constant=float, parse_int=_integer)
        orjson.dumps(value)  # a lone surrogate (\ud800) is no text either
    except (ValueError, RecursionError, orjson.JSONEncodeError):
        raise bad_field("body", f"is not JSON: {problem}", code="json") from None
    return value


def _integer(digits: str) -> int | float:
    return int(digits) if len(digits.lstrip("-")) <= _INT_DIGITS else float(digits)
