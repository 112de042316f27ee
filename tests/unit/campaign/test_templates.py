"""Sandboxed, personalised templates and the missing-variable policy."""

from __future__ import annotations

import pytest

from services.campaign.domain.changes import Change
from services.campaign.domain.eligibility import Profile
from services.campaign.domain.model import Template
from services.campaign.domain.ports import TriggerEvent
from services.campaign.domain.templates import (
    MissingVariable,
    build_context,
    check_template,
    render,
    uses_event,
)

PROFILE = Profile(user_id="u1", traits={"first_name": "Ada", "plan": "pro"}, city="Berlin")
CHANGE = Change("chg-1", "shop", "u1", "segment", 0, segment_id="cart_abandoners", entered=True)
EVENT = TriggerEvent("e1", "Added to Cart", 0, {"sku": "SKU-1", "price": 9.5})


def context(event=EVENT):
    return build_context(PROFILE, CHANGE, event, "c1", "Cart", "A")


def test_traits_change_and_event_personalise_the_message() -> None:
    template = Template(
        title="{{ user.first_name }}, still thinking?",
        body="{{ event.properties.sku }} for {{ '%.2f' | format(event.properties.price) }} "
        "({{ change.segment_id }}, {{ user.traits.plan }}, {{ user.city }}, "
        "{{ campaign.variant }})",
        data={"link": "app://cart/{{ event.properties.sku }}"},
    )
    rendered = render(template, context())
    assert rendered.title == "Ada, still thinking?"
    assert rendered.body == "SKU-1 for 9.50 (cart_abandoners, pro, Berlin, A)"
    assert rendered.data == {"link": "app://cart/SKU-1"}
    assert uses_event(template)
    assert not uses_event(Template(body="{{ user.first_name }}"))


def test_missing_variables_render_empty_or_suppress() -> None:
    lenient = Template(body="Hi {{ user.nickname }}{{ event.properties.colour.name }}!")
    assert render(lenient, context(event=None)).body == "Hi !"
    strict = lenient.model_copy(update={"suppress_on_missing": True})
    with pytest.raises(MissingVariable):
        render(strict, context())
    # The template's own fallback keeps a strict template sendable.
    fallback = Template(body="Hi {{ user.nickname | default('there') }}", suppress_on_missing=True)
    assert render(fallback, context()).body == "Hi there"


def test_the_sandbox_refuses_python_internals() -> None:
    escape = Template(body="{{ user.__class__.__mro__ }}")
    with pytest.raises(Exception, match=r"unsafe|access"):
        render(escape.model_copy(update={"suppress_on_missing": True}), context())
    assert "__mro__" not in render(escape, context()).body


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("{{ user.name", "not a valid template"),
        ("{{ secrets.key }}", "unknown variable(s) secrets"),
        ("x" * 20_001, "at most"),
    ],
)
def test_check_template_explains_what_is_wrong(source: str, problem: str) -> None:
    assert problem in (check_template(source) or "")


def test_check_template_accepts_known_variables() -> None:
    assert check_template("{% for k, v in user.traits.items() %}{{ k }}{% endfor %}") is None
