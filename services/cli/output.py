"""How the CLI prints: rich consoles, one-line messages, readable values, times and enums.

Output for people goes to stdout through `stdout()`; problems go to stderr, one line
each. `--json` output prints the proto as JSON (field names as in the .proto).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from cohortflow.types.v1 import types_pb2
from google.protobuf import json_format, timestamp_pb2
from google.protobuf.message import Message
from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn

# Wide enough that tables and lines do not wrap when the output is a pipe or a file.
_PIPE_WIDTH = 160


def _console(stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else _PIPE_WIDTH
    return Console(file=stream, width=width, stderr=stderr, highlight=False)


def stdout() -> Console:
    return _console(stderr=False)


def stderr() -> Console:
    return _console(stderr=True)


def problem(message: str, console: Console | None = None) -> None:
    """One line on stderr, never wrapped, never read as markup."""
    if console is None:
        print(message, file=sys.stderr, flush=True)
    else:
        console.print(message, markup=False, highlight=False, soft_wrap=True)


def error(message: str) -> None:
    problem("error: " + " ".join(message.split()))


def print_json(message: Message) -> None:
    text = json_format.MessageToJson(message, preserving_proto_field_name=True, indent=2)
    sys.stdout.write(text + "\n")


def time_text(ts: timestamp_pb2.Timestamp | None, *, empty: str = "-") -> str:
    """ISO-8601 in UTC to the second, or `empty` for an unset timestamp."""
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return empty
    moment = datetime.fromtimestamp(ts.seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def value_text(value: types_pb2.Value) -> str:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        number = value.number_value
        return str(int(number)) if number.is_integer() else f"{number:g}"
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "timestamp_value":
        return time_text(value.timestamp_value)
    if kind == "list_value":
        return "[" + ", ".join(value_text(v) for v in value.list_value.values) + "]"
    return ""


def enum_label(enum: Any, number: int, *, empty: str = "-") -> str:
    """`LIFECYCLE_STATE_ACTIVE` -> `active`; the zero value -> `empty`."""
    if number == 0:
        return empty
    name: str = enum.Name(number)
    prefix = enum.Name(0).removesuffix("UNSPECIFIED")
    return name.removeprefix(prefix).lower().replace("_", " ")


def state_label(state: int) -> str:
    return enum_label(types_pb2.LifecycleState, state, empty="none")


def rfm_label(group: int) -> str:
    return enum_label(types_pb2.RfmGroup, group, empty="none")


def violations_text(violations: Iterable[Any]) -> str:
    """`field: description; ...` of FieldViolation messages."""
    return "; ".join(f"{v.field}: {v.description}" for v in violations)


def live_progress(label: str, *columns: ProgressColumn) -> Progress:
    """A progress bar on stderr while the command runs; nothing when stderr is not a terminal."""
    console = stderr()
    return Progress(
        TextColumn(label),
        BarColumn(),
        *columns,
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
