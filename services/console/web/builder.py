"""The segment builder: its page, and the JSON calls it makes as you type.

The builder edits the readable dict form of a definition (the one segment files and
the log use). Every draft goes through the projector's own definition parser (the
messages of the server, with the same paths) and then AnalyticsService.ValidateSegment,
which runs the very checks of CreateSegment/UpdateSegment on the server (references,
cycles, names). Preview is PreviewSegment; publishing is CreateSegment/UpdateSegment.
"""

from __future__ import annotations

from typing import Any

import yaml
from cohortflow.analytics.v1 import analytics_pb2 as apb
from cohortflow.segments.v1 import segments_pb2 as spb
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.common.segment_wire import condition_from_dict, condition_to_dict
from services.common.segments.definition import DefinitionError, parse
from services.console.backends import BackendError
from services.console.web import inputs
from services.console.web.access import Access, require
from services.console.web.render import page, when

MAX_JSON_DEPTH = 40
EXAMPLE = {"all": [{"lifecycle": ["active", "loyal"]}]}


def _scan(data: Any, path: str) -> None:
    """Refuse NUL/control characters anywhere in the draft and absurd nesting (iterative)."""
    stack: list[tuple[Any, str, int]] = [(data, path, 0)]
    while stack:
        value, where, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise inputs.FieldError(where, f"nests deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(value, str):
            inputs.text(value, where, max_len=inputs.MAX_TEXT)
        elif isinstance(value, dict):
            for key, item in value.items():
                inputs.text(key, f"{where}.{key!s:.40}", max_len=200)
                stack.append((item, f"{where}.{key}", depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value))


def _draft(data: dict[str, Any]) -> spb.Segment:
    """The draft as a Segment, or FieldError / BackendError naming every problem."""
    segment_id = inputs.ident(data.get("segment_id"), "segment_id", required=False)
    display_name = inputs.text(data.get("display_name"), "display_name", max_len=1000)
    description = inputs.text(data.get("description"), "description", max_len=5000)
    condition = data.get("condition")
    _scan(condition, "segment.condition")
    try:
        parse(condition, "segment.condition")
    except DefinitionError as error:
        raise BackendError(400, "the definition has problems", error.problems) from None
    except RecursionError:
        raise inputs.FieldError("segment.condition", "nests too deep") from None
    try:
        proto = condition_from_dict(condition)  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise inputs.FieldError("segment.condition", f"cannot be sent ({error!r})") from None
    return spb.Segment(
        segment_id=segment_id, display_name=display_name, description=description, condition=proto
    )


async def _validated(access: Access, data: dict[str, Any]) -> tuple[spb.Segment, str]:
    segment = _draft(data)
    c = access.clients
    reply = await c.call(c.analytics.ValidateSegment, apb.ValidateSegmentRequest(segment=segment))
    text = yaml.safe_dump(
        {"condition": condition_to_dict(segment.condition)}, sort_keys=False, allow_unicode=True
    )
    return segment, text if reply is not None else ""


async def validate(request: Request) -> Response:
    access = await require(request, change=True)
    _, text = await _validated(access, await inputs.json_body(request))
    return JSONResponse({"ok": True, "yaml": text})


async def preview(request: Request) -> Response:
    access = await require(request, change=True)
    data = await inputs.json_body(request)
    segment, _ = await _validated(access, data)
    c = access.clients
    reply = await c.call(
        c.segments.PreviewSegment, spb.PreviewSegmentRequest(segment=segment, sample_size=20)
    )
    return JSONResponse(
        {
            "members": reply.members,
            "sample": list(reply.sample_user_ids),
            "entering": reply.entering,
            "exiting": reply.exiting,
            "entering_sample": list(reply.entering_sample),
            "exiting_sample": list(reply.exiting_sample),
            "position": reply.position,
            "as_of": when(reply.as_of_time),
            "live_version": reply.live_version,
            "took_ms": round(reply.took.ToMicroseconds() / 1000, 1),
        }
    )


async def publish(request: Request) -> Response:
    access = await require(request, editor=True)
    data = await inputs.json_body(request)
    segment, _ = await _validated(access, data)
    if not segment.segment_id:
        raise inputs.FieldError("segment_id", "is required to publish")
    expected = data.get("expected_version", 0)
    if not isinstance(expected, int) or isinstance(expected, bool) or not 0 <= expected < 1 << 62:
        raise inputs.FieldError("expected_version", "must be a version number (0: any)")
    c = access.clients
    if data.get("mode") == "update":
        reply = await c.call(
            c.segments.UpdateSegment,
            spb.UpdateSegmentRequest(segment=segment, expected_version=expected),
        )
    else:
        reply = await c.call(
            c.segments.CreateSegment,
            spb.CreateSegmentRequest(segment_id=segment.segment_id, segment=segment),
        )
    return JSONResponse(
        {
            "segment_id": reply.segment.segment_id,
            "version": reply.segment.version,
            # Read your write: the segment page waits until the projector has the definition.
            "url": f"/apps/{access.app_id}/segments/{reply.segment.segment_id}"
            f"?after={reply.segment.defined_position}",
        }
    )


async def builder_page(request: Request) -> Response:
    access = await require(request)
    segment_id = request.path_params.get("segment_id")
    draft: dict[str, Any] = {
        "segment_id": "",
        "display_name": "",
        "description": "",
        "condition": EXAMPLE,
        "mode": "create",
        "expected_version": 0,
    }
    if segment_id is not None:
        segment_id = inputs.ident(segment_id, "segment_id")
        c = access.clients
        current = (
            await c.call(c.segments.GetSegment, spb.GetSegmentRequest(segment_id=segment_id))
        ).segment
        draft = {
            "segment_id": current.segment_id,
            "display_name": current.display_name,
            "description": current.description,
            "condition": condition_to_dict(current.condition),
            "mode": "update",
            "expected_version": current.version,
        }
    return page(request, "builder.html", access, draft=draft)


def routes() -> list[Route]:
    return [
        Route("/api/segments/validate", validate, methods=["POST"]),
        Route("/api/segments/preview", preview, methods=["POST"]),
        Route("/api/segments/publish", publish, methods=["POST"]),
    ]
