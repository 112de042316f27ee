"""Rendering pages: the Jinja2 environment and the context every page gets."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cohortflow.types.v1 import types_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.templating import Jinja2Templates

from services.console.web.access import Access
from services.console.web.names import REASONS, group_label

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parent.parent / "templates"))


def when(ts: Timestamp | None) -> str:
    """A protobuf time as "2026-01-31 14:05:09 UTC" ("" when unset)."""
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return ""
    return ts.ToDatetime(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def short_enum(name: str) -> str:
    """LIFECYCLE_STATE_ACTIVE -> active, RFM_GROUP_AT_RISK -> at risk."""
    for prefix in ("LIFECYCLE_STATE_", "RFM_GROUP_", "CHANNEL_", "STATE_", "STATUS_", "KIND_"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    return name.lower().replace("_", " ")


def channel_name(number: int) -> str:
    return short_enum(types_pb2.Channel.Name(number)) if number else ""


def to_json(value: Any) -> str:
    """JSON safe to put inside <script type="application/json">."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


TEMPLATES.env.filters["when"] = when
TEMPLATES.env.filters["short"] = short_enum
TEMPLATES.env.filters["to_json"] = to_json
TEMPLATES.env.filters["channel"] = channel_name
TEMPLATES.env.filters["group"] = group_label
TEMPLATES.env.globals["now_year"] = lambda: datetime.now(UTC).year
TEMPLATES.env.globals["reasons"] = REASONS  # what each reason of an unsent delivery means


def page(
    request: Request, template: str, access: Access | None, status: int = 200, **context: Any
) -> HTMLResponse:
    base: dict[str, Any] = {"access": access}
    if access is not None:
        base.update(
            app_id=access.app_id,
            role=access.role,
            apps=sorted(access.session.bindings.items()),
            csrf_token=access.session.csrf_token,
            username=access.session.username,
        )
    return TEMPLATES.TemplateResponse(request, template, {**base, **context}, status_code=status)


def render_error(request: Request, status: int, message: str) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(
        request,
        "error.html",
        {"status": status, "message": message, "access": None},
        status_code=status,
    )
