"""Refused requests as JSON answers that name the bad field.

Every refusal is `{"error": <what is wrong>, "code": <reason>, "fields": [{"field": <path>,
"message": <why>}, ...]}`, with 400, 401, 413, 415 or 503. `code` is the reason counted in
`cohortflow_ingest_http_refusals_total`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.responses import JSONResponse

from services.ingest import metrics


class Refusal(Exception):
    """A request ingest will not take, and why."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: Sequence[tuple[str, str]] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = tuple(fields)
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": self.message,
            "code": self.code,
            "fields": [{"field": field, "message": why} for field, why in self.fields],
        }

    def response(self) -> JSONResponse:
        metrics.HTTP_REFUSALS.labels(self.code).inc()
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def bad_field(field: str, message: str, *, code: str = "invalid") -> Refusal:
    """400: one field of the request is wrong."""
    return Refusal(400, code, f"{field}: {message}", [(field, message)])
