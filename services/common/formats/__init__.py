"""Event exports of the tools users migrate from, as cohortflow.ingest.v1 messages.

Each format module (segment, mixpanel, amplitude) has `convert(obj) -> Converted`: one
decoded JSON object of that tool's export in, the Event to track and the Identify calls
out, or a `FieldError` naming the source JSON path that is wrong. Pure: no files, no
gRPC, no terminal, so the CLI import and an HTTP endpoint share them. `detect` tells the
format of a file from its first objects. What each field maps to, and what is dropped:
the module docs and README.md (CLI: formats users migrate from).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.common.formats import amplitude, mixpanel, segment
from services.common.formats.fields import Converted, FieldError

Convert = Callable[[dict[str, Any]], Converted]

CONVERTERS: dict[str, Convert] = {
    "segment": segment.convert,
    "mixpanel": mixpanel.convert,
    "amplitude": amplitude.convert,
}

__all__ = ["CONVERTERS", "Convert", "Converted", "FieldError"]
