"""Personalised message text: sandboxed Jinja2 over the user, the change and its event.

Templates can read four variables: `user` (user_id, traits, contact fields;
traits are also reachable directly, `user.first_name`), `change` (what
triggered), `event` (the triggering event: name, properties, time) and
`campaign`. The sandbox refuses attribute access to Python internals and
bounds `range()`. A missing variable renders as "" (policy EMPTY) or fails the
render (policy SUPPRESS), which suppresses the send.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import ChainableUndefined, StrictUndefined, TemplateError, UndefinedError, meta, nodes
from jinja2.sandbox import SandboxedEnvironment

from services.campaign.domain.model import Template

VARIABLES = frozenset({"user", "change", "event", "campaign"})
MAX_TEMPLATE_CHARS = 20_000

_LENIENT = SandboxedEnvironment(undefined=ChainableUndefined, autoescape=False)
_STRICT = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


class MissingVariable(Exception):
    """A template used a variable that this user or event lacks."""


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
    """Why this template text cannot be used, or None if it can."""
    if len(source) > MAX_TEMPLATE_CHARS:
        return f"templates are at most {MAX_TEMPLATE_CHARS} characters"
    try:
        unknown = meta.find_undeclared_variables(_parse(source)) - VARIABLES
    except TemplateError as error:
        return f"not a valid template: {error}"
    if unknown:
        names = ", ".join(sorted(unknown))
        return f"unknown variable(s) {names}; use user, change, event or campaign"
    return None


def uses_event(template: Template) -> bool:
    """Does rendering need the triggering event's properties?"""
    sources = (template.title, template.body, *template.data.values())
    return any("event" in meta.find_undeclared_variables(_parse(s)) for s in sources if s)


def render(template: Template, context: dict[str, Any]) -> Rendered:
    """Render every part; raises MissingVariable under the SUPPRESS policy."""
    strict = template.suppress_on_missing
    try:
        return Rendered(
            title=_compile(template.title, strict).render(context) if template.title else "",
            body=_compile(template.body, strict).render(context) if template.body else "",
            data={k: _compile(v, strict).render(context) for k, v in template.data.items()},
        )
    except UndefinedError as error:
        raise MissingVariable(str(error)) from error


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
