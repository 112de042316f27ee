"""The check every format's tests share: a source object refused, naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from services.common.formats import Convert, FieldError


def assert_refused(convert: Convert, source: dict[str, Any], field: str, reason: str) -> None:
    """`convert(source)` raises a FieldError at `field` whose reason holds `reason`."""
    with pytest.raises(FieldError) as error:
        convert(source)
    assert (error.value.field, reason in error.value.reason) == (field, True), error.value
