"""Personalised message text: sandboxed Jinja2 over the user, the change and its event.

Templates can read four variables: `user` (user_id, traits, contact fields;
traits are also reachable directly, `user.first_name`), `change` (what
triggered), `event` (the triggering event: name, properties, time) and
`campaign`. They run in `CampaignSandbox` (no Python internals, bounded
arithmetic, nothing evaluated at compile time). A missing variable renders as ""
(policy EMPTY) or fails the render (policy SUPPRESS), which suppresses the send;
any other failure (an error, a limit, output over `max_chars`) is a RenderFailed
with its reason, which fails that one send.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from jinja2 import ChainableUndefined, StrictUndefined, TemplateError, UndefinedError, nodes

from services.campaign.domain.sandbox import CampaignSandbox, TemplateLimit, undeclared_variables
from services.campaign.domain.text import shown

VARIABLES = frozenset({"user", "change", "event", "campaign"})
MAX_TEMPLATE_CHARS = 20_000
# Default limit of one rendered message (title, body and data together), characters.
DEFAULT_MAX_OUTPUT_CHARS = 100_000
# Reason of a suppressed send (policy SUPPRESS), and of failed ones.
MISSING_VARIABLE = "missing_variable"
RENDER_ERROR = "render_error"
RENDER_TOO_LARGE = "render_too_large"
RENDER_TIMEOUT = "render_timeout"
# Statements that need other templates (there are none) or change the evaluation.
_REFUSED_NODES = {
    nodes.Extends: "extends",
    nodes.Include: "include",
    nodes.Import: "import",
    nodes.FromImport: "from ... import",
    nodes.EvalContextModifier: "autoescape",
}

_LENIENT = CampaignSandbox(undefined=ChainableUndefined)
_STRICT = CampaignSandbox(undefined=StrictUndefined)


class Template(Protocol):
    """The parts of a message template (model.Template, or the same sent to a worker)."""

    @property
    def title(self) -> str: ...
    @property
    def body(self) -> str: ...
    @property
    def data(self) -> Mapping[str, str]: ...
    @property
    def suppress_on_missing(self) -> bool: ...


@dataclass(frozen=True)
class TemplateParts:
    """A Template as plain values (what a render worker is sent)."""

    title: str
    body: str
    data: Mapping[str, str]
    suppress_on_missing: bool


class MissingVariable(Exception):
    """A template used a variable that this user or event lacks."""


class RenderFailed(Exception):
    """A template that cannot be rendered for this user; `reason` names the limit or error."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Rendered:
    title: str
    body: str
    data: dict[str, str]


@lru_cache(maxsize=512)
def _compile(source: str, strict: bool) -> Any:
    return (_STRICT if strict else _LENIENT).from_string(source)


def _parse(source: str) -> nodes.Template:
    return _LENIENT.parse(source)


def check_template(source: str) -> str | None:
    """Why this template text cannot be used, or None if it can. Runs nothing of it."""
    if len(source) > MAX_TEMPLATE_CHARS:
        return f"templates are at most {MAX_TEMPLATE_CHARS} characters"
    try:
        tree = _parse(source)
        for kind, name in _REFUSED_NODES.items():
            if tree.find(kind) is not None:
                return f"{{% {name} %}} is not available in campaign templates"
        unknown = undeclared_variables(tree) - VARIABLES
    except TemplateError as error:
        return f"not a valid template: {shown(str(error))}"
    except RecursionError:
        return "not a valid template: nested too deeply"
    except (TemplateLimit, ArithmeticError, ValueError, TypeError) as error:
        return f"not a valid template: {shown(str(error))}"
    if unknown:
        names = ", ".join(sorted(unknown))
        return f"unknown variable(s) {shown(names)}; use user, change, event or campaign"
    return None


def uses_event(template: Template) -> bool:
    """Does rendering need the triggering event's properties?"""
    sources = (template.title, template.body, *template.data.values())
    return any("event" in undeclared_variables(_parse(s)) for s in sources if s)


class _Output:
    """Reads rendered chunks until the message's character budget is spent."""

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self.left = max_chars

    def render(self, source: str, strict: bool, context: dict[str, Any]) -> str:
        if not source:
            return ""
        parts: list[str] = []
        for chunk in _compile(source, strict).generate(context):
            self.left -= len(chunk)
            if self.left < 0:
                msg = f"the rendered message is over {self.max_chars:,} characters"
                raise RenderFailed(RENDER_TOO_LARGE, msg)
            parts.append(chunk)
        return "".join(parts)


@dataclass(frozen=True)
class Unrendered:
    """Why a template produced no message for this user."""

    # missing_variable (the send is suppressed) or a render_* reason (the send fails).
    reason: str
    detail: str
    # It hit the time or memory limit: worth not trying again for a while.
    exhausted: bool = False


def render_outcome(
    template: Template, context: dict[str, Any], max_chars: int = DEFAULT_MAX_OUTPUT_CHARS
) -> Rendered | Unrendered:
    """`render`, with its failures as values."""
    try:
        return render(template, context, max_chars)
    except MissingVariable as error:
        return Unrendered(MISSING_VARIABLE, str(error))
    except RenderFailed as error:
        return Unrendered(error.reason, error.detail)


def render(
    template: Template, context: dict[str, Any], max_chars: int = DEFAULT_MAX_OUTPUT_CHARS
) -> Rendered:
    """Render every part within `max_chars` in all. Raises MissingVariable under the
    SUPPRESS policy and RenderFailed for anything else that goes wrong."""
    strict = template.suppress_on_missing
    output = _Output(max_chars)
    try:
        return Rendered(
            title=output.render(template.title, strict, context),
            body=output.render(template.body, strict, context),
            data={k: output.render(v, strict, context) for k, v in template.data.items()},
        )
    except UndefinedError as error:
        raise MissingVariable(shown(str(error))) from error
    except RenderFailed:
        raise
    except TemplateLimit as error:
        raise RenderFailed(RENDER_TOO_LARGE, shown(str(error))) from error
    except MemoryError:
        raise  # the renderer's process limit: see adapters/rendering.py
    except RecursionError as error:
        raise RenderFailed(RENDER_ERROR, "nested too deeply") from error
    except Exception as error:  # the template's own errors: 1/0, SecurityError, ...
        raise RenderFailed(RENDER_ERROR, shown(f"{type(error).__name__}: {error}")) from error


def build_context(
    profile: Any,
    change: Any,
    event: Any,
    campaign_id: str,
    campaign_name: str,
    variant: str,
) -> dict[str, Any]:
    """The variables a template sees (profile: eligibility.Profile, change:
    changes.Change, event: ports.TriggerEvent or None)."""
    user = {
        **profile.traits,
        "user_id": profile.user_id,
        "traits": profile.traits,
        "email": profile.email,
        "phone": profile.phone,
        "timezone": profile.timezone,
        "country": profile.country,
        "city": profile.city,
        "lifecycle_state": profile.lifecycle_state,
        "rfm_group": profile.rfm_group,
    }
    return {
        "user": user,
        "change": {
            "change_id": change.change_id,
            "kind": change.kind,
            "segment_id": change.segment_id,
            "entered": change.entered,
            "from": change.from_value,
            "to": change.to_value,
            "event_name": change.event_name,
            "time_us": change.recorded_us,
        },
        "event": {}
        if event is None
        else {
            "event_id": event.event_id,
            "name": event.name,
            "time_us": event.time_us,
            "properties": event.properties,
        },
        "campaign": {"campaign_id": campaign_id, "name": campaign_name, "variant": variant},
    }
