"""The parser's state and the pieces every condition kind is read with.

`Reader.node` dispatches through an explicit table of the language's kinds (`kinds.KINDS`):
only those names are conditions, so no input can reach anything else of the parser. Every
problem is collected with the path of its node; reading goes on past a bad node so one
answer names them all (at most `MAX_PROBLEMS`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from services.common.segments.limits import Limits, label, shown
from services.common.segments.nodes import OPERATORS, Filter, Node, Scalar, TimeValue
from services.common.segments.timing import parse_duration, parse_time

MAX_PROBLEMS = 50

# Reads one kind's body at `path` (nested `depth` conditions deep); None if it is unusable.
Kind = Callable[["Reader", Any, str, int], "Node | None"]


class DefinitionError(ValueError):
    """Every problem of a definition, each as (path, message)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p}: {m}" for p, m in problems))


class Reader:
    def __init__(self, kinds: Mapping[str, Kind], limits: Limits) -> None:
        self._kinds = kinds
        self._kind_names = ", ".join(kinds)
        self.limits = limits
        self.problems: list[tuple[str, str]] = []
        self.dropped = 0
        self.conditions = 0
        self.segments: set[str] = set()

    def fail(self, path: str, message: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append((path, message))
        else:
            self.dropped += 1

    def report(self, path: str) -> list[tuple[str, str]]:
        """The problems found, with a last line counting those left out."""
        if not self.dropped:
            return self.problems
        return [*self.problems, (path, f"and {self.dropped} more problems")]

    # ---- conditions ------------------------------------------------------------------

    def node(self, data: Any, path: str, depth: int = 0) -> Node | None:
        """The condition at `path`: a mapping of exactly one kind to its body."""
        if depth > self.limits.max_depth:
            self.fail(path, f"conditions nest at most {self.limits.max_depth} deep")
            return None
        self.conditions += 1
        if self.conditions > self.limits.max_conditions:
            if self.conditions == self.limits.max_conditions + 1:
                self.fail(path, f"at most {self.limits.max_conditions} conditions per segment")
            return None
        if not isinstance(data, dict) or len(data) != 1:
            self.fail(path, f"must be exactly one of {self._kind_names}")
            return None
        ((kind, body),) = data.items()
        read = self._kinds.get(kind) if isinstance(kind, str) else None
        if read is None:
            self.fail(path, f"unknown condition kind {shown(kind)}; one of {self._kind_names}")
            return None
        return read(self, body, f"{path}.{kind}", depth)

    def children(self, body: Any, path: str, depth: int) -> tuple[Node, ...]:
        if not isinstance(body, list) or not body:
            self.fail(path, "must be a non-empty list of conditions")
            return ()
        nodes = [self.node(child, f"{path}[{i}]", depth + 1) for i, child in enumerate(body)]
        return tuple(n for n in nodes if n is not None)

    # ---- bodies ----------------------------------------------------------------------

    def fields(self, body: Any, path: str, allowed: set[str]) -> dict[str, Any]:
        """`body` as a mapping of known fields (unknown ones are problems)."""
        if not isinstance(body, dict):
            self.fail(path, "must be a mapping")
            return {}
        for key in body:
            if key not in allowed:
                expected = f"unknown field (expected one of {sorted(allowed)})"
                self.fail(f"{path}.{label(key)}", expected)
        return body

    def text(self, value: Any) -> str:
        """`value` if it is a string, else "" (its problem is reported where it is read)."""
        return value if isinstance(value, str) else ""

    def number(self, value: Any, path: str, message: str = "must be a number") -> float | None:
        if not isinstance(value, int | float) or isinstance(value, bool):
            self.fail(path, message)
            return None
        try:
            return float(value)
        except OverflowError:
            self.fail(path, f"{shown(value)} is too large")
            return None

    def scalar(self, value: Any, path: str) -> Scalar | None:
        if isinstance(value, bool | str):
            return value
        if isinstance(value, int | float):
            return self.number(value, path)
        self.fail(path, f"{shown(value)} must be a string, number or boolean")
        return None

    def operand(self, body: dict[str, Any], path: str) -> Scalar | tuple[Scalar, ...] | None:
        """The value an operator compares with: value, values (for "in") or time."""
        op = body.get("op")
        if not isinstance(op, str) or op not in OPERATORS:
            self.fail(f"{path}.op", f"must be one of {', '.join(sorted(OPERATORS))}")
            return None
        if op == "exists":
            return None
        if op == "in":
            values = body.get("values")
            if not isinstance(values, list) or not values:
                self.fail(f"{path}.values", 'is required for "in": a non-empty list')
                return None
            parsed = [self.scalar(v, f"{path}.values[{i}]") for i, v in enumerate(values)]
            return tuple(v for v in parsed if v is not None)
        if "time" in body:
            try:
                return TimeValue(parse_time(body["time"]))
            except ValueError as error:
                self.fail(f"{path}.time", str(error))
                return None
        if "value" not in body:
            self.fail(f"{path}.value", f'is required for "{op}"')
            return None
        value = self.scalar(body["value"], f"{path}.value")
        if op in ("<", "<=", ">", ">=") and isinstance(value, bool | str):
            self.fail(f"{path}.value", f'"{op}" compares numbers or times (use time: ...)')
        if op in ("starts_with",) and not isinstance(value, str):
            self.fail(f"{path}.value", f'"{op}" needs a string')
        return value

    def filters(self, body: Any, path: str) -> tuple[Filter, ...]:
        if body is None:
            return ()
        if not isinstance(body, list):
            self.fail(path, "must be a list of {property, op, value}")
            return ()
        out = []
        for i, item in enumerate(body):
            here = f"{path}[{i}]"
            item = self.fields(item, here, {"property", "op", "value", "values", "time"})
            prop = item.get("property")
            if not isinstance(prop, str) or not prop:
                self.fail(f"{here}.property", "is required")
                continue
            out.append(Filter(prop, self.text(item.get("op")), self.operand(item, here)))
        return tuple(sorted(out, key=Filter.key))

    def duration(self, body: dict[str, Any], field: str, path: str) -> int | None:
        if field not in body or body[field] is None:
            return None
        try:
            return parse_duration(body[field])
        except ValueError as error:
            self.fail(f"{path}.{field}", str(error))
            return None

    def event_name(self, body: dict[str, Any], field: str, path: str) -> str:
        name = body.get(field)
        if not isinstance(name, str) or not name.strip():
            self.fail(f"{path}.{field}", "is required: an event name")
            return ""
        return name

    def names(self, body: Any, path: str, known: frozenset[str]) -> frozenset[str]:
        items = body if isinstance(body, list) else None
        if not items:
            self.fail(path, f"must be a non-empty list of: {', '.join(sorted(known))}")
            return frozenset()
        for i, item in enumerate(items):
            if not isinstance(item, str) or item not in known:
                self.fail(
                    f"{path}[{i}]", f"unknown {shown(item)}; one of {', '.join(sorted(known))}"
                )
        return frozenset(i for i in items if isinstance(i, str))
