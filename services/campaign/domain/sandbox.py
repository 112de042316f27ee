"""The Jinja2 sandbox campaign templates run in, with bounds on the work they can ask for.

On top of Jinja2's `SandboxedEnvironment` (no Python internals, `range()` bounded):

- Nothing is evaluated while a template is compiled. Jinja2 folds constant expressions
  at compile time (`{{ 'x' * 10**9 }}` would be computed by CreateCampaign); here every
  arithmetic operator is intercepted, which the compiler never folds, the optimizer is
  off, and output nodes are never turned into constants.
- Arithmetic and repetition that would build a huge value are refused before they run
  (`9 ** (9 ** 7)`, `'x' * 10**9`, `[0] * 10**9`), as are huge widths of the padding
  filters and string methods (`'x'|center(10**9)`, `'x'.ljust(10**9)`) and of format
  specifications (`'%0999999999d' % 1`, `'{:>999999999}'.format(1)`).

This bounds what a single operation costs. It does not bound a whole render (loops,
output): the renderer runs templates in worker processes with a time and memory limit
and stops reading output past a size limit.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sized
from string import Formatter
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator
from jinja2.meta import TrackingCodeGenerator
from jinja2.sandbox import SandboxedEnvironment

# Largest integer a template may compute (about 1,200 decimal digits).
MAX_INT_BITS = 4096
# Most characters or items a repetition, padding or width may produce.
MAX_REPEAT = 100_000
_ARITHMETIC = frozenset({"+", "-", "*", "/", "//", "%", "**"})
_PADDING_FILTERS = frozenset({"center", "indent", "wordwrap", "truncate", "batch", "slice"})
_PADDING_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
_NUMBER = re.compile(r"\d+")
_PRINTF = re.compile(r"%[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


class TemplateLimit(Exception):
    """A template asked for more work or a bigger value than templates may."""


class _NoConstantOutput(CodeGenerator):
    """Compiles `{{ ... }}` to code evaluated at render time, never to a constant."""

    def _output_child_to_const(self, node: nodes.Expr, frame: Any, finalize: Any) -> str:
        raise nodes.Impossible()


class _NoConstantTracking(TrackingCodeGenerator):
    """jinja2.meta's variable tracker without its optimizer and constant output: finding
    a template's variables evaluates nothing (`'a…'|replace('', 'b…')` included)."""

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.optimizer = None

    def _output_child_to_const(self, node: nodes.Expr, frame: Any, finalize: Any) -> str:
        raise nodes.Impossible()


def undeclared_variables(tree: nodes.Template) -> set[str]:
    """The variables a parsed template reads from its context (jinja2.meta's answer)."""
    tracker = _NoConstantTracking(tree.environment)
    tracker.visit(tree)
    return set(tracker.undeclared_identifiers)


def _check_width(value: Any) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_REPEAT:
        msg = f"a width or count of {value} is over the limit of {MAX_REPEAT:,}"
        raise TemplateLimit(msg)


def _check_spec(spec: str) -> None:
    """Widths and precisions in a format specification (`>20`, `.3f`) stay bounded."""
    for number in _NUMBER.findall(spec):
        _check_width(int(number))


def _check_printf(text: str) -> None:
    for match in _PRINTF.finditer(text):
        if "*" in match.group(0):
            msg = "a width or precision '*' taken from the arguments"
            raise TemplateLimit(msg)
        _check_spec(match.group(0))


def _bits(value: int) -> int:
    return abs(value).bit_length()


def _check_binop(op: str, left: Any, right: Any) -> None:
    ints = isinstance(left, int) and isinstance(right, int)
    if op == "**" and ints and right > 0 and _bits(left) > 1:
        if _bits(left) * right > MAX_INT_BITS:
            msg = f"a power with more than {MAX_INT_BITS:,} bits"
            raise TemplateLimit(msg)
    elif op == "*" and ints:
        if _bits(left) + _bits(right) > MAX_INT_BITS:
            msg = f"a product with more than {MAX_INT_BITS:,} bits"
            raise TemplateLimit(msg)
    elif op == "%" and isinstance(left, str):
        _check_printf(left)
    elif op == "*":
        sized, count = (left, right) if isinstance(right, int) else (right, left)
        if isinstance(sized, Sized) and isinstance(count, int) and len(sized) * count > MAX_REPEAT:
            msg = f"a repetition of more than {MAX_REPEAT:,} characters or items"
            raise TemplateLimit(msg)


def _widths(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    for value in (*args[1:], *kwargs.values()):
        _check_width(value)


def _printf(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if args and isinstance(args[0], str):
        _check_printf(args[0])


def _bounded_filter(
    function: Callable[..., Any], check: Callable[[tuple[Any, ...], dict[str, Any]], None]
) -> Callable[..., Any]:
    @functools.wraps(function)  # keeps Jinja2's pass_context / pass_environment marks
    def bounded(*args: Any, **kwargs: Any) -> Any:
        check(args, kwargs)
        return function(*args, **kwargs)

    return bounded


class CampaignSandbox(SandboxedEnvironment):
    """The sandbox of campaign templates (plain text: no autoescaping)."""

    intercepted_binops = _ARITHMETIC
    code_generator_class = _NoConstantOutput

    def __init__(self, **options: Any) -> None:
        super().__init__(autoescape=False, optimized=False, **options)
        for name in _PADDING_FILTERS & self.filters.keys():
            self.filters[name] = _bounded_filter(self.filters[name], _widths)
        self.filters["format"] = _bounded_filter(self.filters["format"], _printf)

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        _check_binop(operator_, left, right)
        return super().call_binop(context, operator_, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(__obj, "__name__", "") in _PADDING_METHODS and isinstance(
            getattr(__obj, "__self__", None), str
        ):
            for value in (*args, *kwargs.values()):
                _check_width(value)
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            for _literal, _field, spec, _conversion in Formatter().parse(value.__self__):
                if spec and "{" in spec:
                    msg = "a format specification taken from the arguments"
                    raise TemplateLimit(msg)
                _check_spec(spec or "")
        return wrapped


__all__ = [
    "MAX_INT_BITS",
    "MAX_REPEAT",
    "CampaignSandbox",
    "TemplateLimit",
    "undeclared_variables",
]
