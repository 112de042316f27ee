"""Checks of everything a browser sends: each failure names the field it is about.

A `FieldError` becomes a 400 answer with a JSON body `{"error", "fields": [{field,
message}]}` (or the page's form error), never a 500.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

import orjson
from starlette.datastructures import FormData
from starlette.requests import Request

MAX_BODY = 1_000_000
MAX_TEXT = 10_000
MAX_ID = 256
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class FieldError(Exception):
    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status = status

    def as_json(self) -> dict[str, Any]:
        return {"error": str(self), "fields": [{"field": self.field, "message": self.message}]}


def text(value: Any, field: str, *, max_len: int = MAX_TEXT, required: bool = False) -> str:
    """A text value without NUL or control characters (newlines and tabs allowed)."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise FieldError(field, "must be text")
    if len(value) > max_len:
        raise FieldError(field, f"at most {max_len} characters")
    if _CONTROL.search(value):
        raise FieldError(field, "must not contain NUL or control characters")
    if "\ufffd" in value:
        raise FieldError(field, "is not valid UTF-8")
    if required and not value.strip():
        raise FieldError(field, "is required")
    return value


def ident(value: Any, field: str, *, required: bool = True) -> str:
    """An id (user, segment, campaign): one line of text, no spaces around."""
    out = text(value, field, max_len=MAX_ID, required=required).strip()
    if "\n" in out or "\r" in out or "\t" in out:
        raise FieldError(field, "must be one line")
    return out


def day(value: Any, field: str, default: date) -> date:
    """A date like 2026-01-31 (empty: the default)."""
    raw = ident(value, field, required=False)
    if not raw:
        return default
    try:
        parsed = date.fromisoformat(raw)
    except ValueError:
        raise FieldError(field, "must be a date like 2026-01-31") from None
    if not 1970 <= parsed.year <= 9999:
        raise FieldError(field, "must be between 1970 and 9999")
    return parsed


def day_end_us(d: date) -> int:
    """The last microsecond of a UTC day."""
    start = datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()
    return int(start * 1_000_000) + 86_400_000_000 - 1


def day_start_us(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1_000_000)


async def body_bytes(request: Request) -> bytes:
    """The request body, refused (413) past MAX_BODY bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise FieldError("body", f"at most {MAX_BODY} bytes", 413)
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise FieldError("body", f"at most {MAX_BODY} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


async def json_body(request: Request) -> dict[str, Any]:
    """A JSON object body (UTF-8, at most MAX_BODY bytes, nesting bounded by orjson)."""
    raw = await body_bytes(request)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise FieldError("body", f"is not valid JSON ({error.msg})") from None
    if not isinstance(data, dict):
        raise FieldError("body", "must be a JSON object")
    return data


async def form(request: Request) -> FormData:
    """The posted form, with bounded fields and sizes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise FieldError("body", f"at most {MAX_BODY} bytes", 413)
    try:
        return await request.form(max_files=0, max_fields=200, max_part_size=MAX_BODY)
    except Exception as error:  # multipart/urlencoded parser errors: the body is bad
        raise FieldError("body", f"is not a readable form ({type(error).__name__})") from None
