"""Options shared by the segment commands' reads and writes."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from services.cli.values import BadValue, parse_time, timestamp

JsonOption = Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")]


def as_of_option(text: str | None) -> Any:
    """The Timestamp of an `--as-of` value, or None; a bad value names the option."""
    if text is None:
        return None
    try:
        return timestamp(parse_time(text))
    except BadValue as problem:
        raise typer.BadParameter(str(problem), param_hint="--as-of") from None
