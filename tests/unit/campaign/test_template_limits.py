"""Templates that pass CreateCampaign but cannot be rendered fail one message with a reason;
nothing of a template is evaluated when it is checked; huge values and output are refused."""

from __future__ import annotations

import tracemalloc

import pytest

from services.campaign.domain.model import Template
from services.campaign.domain.sandbox import CampaignSandbox
from services.campaign.domain.templates import (
    MISSING_VARIABLE,
    RENDER_ERROR,
    RENDER_TOO_LARGE,
    Unrendered,
    check_template,
    render,
    render_outcome,
)

CONTEXT = {"user": {"first_name": "Ada", "revenue": 250_000}, "change": {}, "event": {}}


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'x' * 10**9 }}",
        "{{ 9 ** (9 ** 7) }}",
        "{{ [0] * 10**9 }}",
        "{{ 'x'|center(10**9) }}",
        "{{ (10**9)|string }}",
    ],
)
def test_checking_a_template_evaluates_none_of_it(source: str) -> None:
    # The check passes (it is a valid template) without computing anything: the
    # compiled code still holds every operation, deferred to the sandbox at render time.
    assert check_template(source) is None
    code = CampaignSandbox().compile(source, raw=True)
    assert "environment.call_binop(context, '**', " in code
    assert "1000000000" not in code  # 10**9 was not folded into a constant


def test_checking_a_template_folds_no_constant_filter_either() -> None:
    # Literal arguments: Jinja2's optimizer would compute this 81-million-character
    # string while compiling (and while finding the template's variables).
    huge = "{{ '" + "a" * 9000 + "'|replace('', '" + "b" * 9000 + "') }}"
    tracemalloc.start()
    try:
        assert check_template(huge) is None
        CampaignSandbox().compile(huge)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("{{ 1/0 }}", RENDER_ERROR),
        ("{{ range(10**9)|list }}", RENDER_ERROR),
        ("{{ 9 ** (9 ** 7) }}", RENDER_TOO_LARGE),
        ("{{ 2 ** 100000 }}", RENDER_TOO_LARGE),
        ("{{ 'x' * 10**9 }}", RENDER_TOO_LARGE),
        ("{{ [0] * 10**9 }}", RENDER_TOO_LARGE),
        ("{{ (10**2000) * (10**2000) }}", RENDER_TOO_LARGE),
        ("{{ 'x'|center(10**9) }}", RENDER_TOO_LARGE),
        ("{{ 'x'|indent(width=10**9, first=True) }}", RENDER_TOO_LARGE),
        ("{{ 'x'.ljust(10**9) }}", RENDER_TOO_LARGE),
        ("{{ '%0999999999d' % 1 }}", RENDER_TOO_LARGE),
        ("{{ '%*d' % (10**9, 1) }}", RENDER_TOO_LARGE),
        ("{{ '%0999999999d'|format(1) }}", RENDER_TOO_LARGE),
        ("{{ '{:>999999999}'.format(1) }}", RENDER_TOO_LARGE),
        ("{{ '{:>{w}}'.format(1, w=999999999) }}", RENDER_TOO_LARGE),
        ("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}", RENDER_TOO_LARGE),
    ],
)
def test_a_template_that_cannot_be_rendered_is_an_outcome_with_its_reason(
    source: str, reason: str
) -> None:
    assert check_template(source) is None
    outcome = render_outcome(Template(body=source), CONTEXT, max_chars=100_000)
    assert isinstance(outcome, Unrendered)
    assert outcome.reason == reason and outcome.detail and not outcome.exhausted


def test_a_sandbox_escape_fails_under_the_strict_policy_and_renders_empty_otherwise() -> None:
    escape = "{{ cycler.__init__.__globals__.os }}{{ ''.__class__.__mro__[1] }}"
    strict = render_outcome(Template(body=escape, suppress_on_missing=True), CONTEXT)
    assert isinstance(strict, Unrendered) and strict.reason == RENDER_ERROR
    assert "unsafe" in strict.detail
    assert render(Template(body=escape), CONTEXT).body == ""


def test_output_over_the_limit_is_refused_however_it_is_split() -> None:
    # 10 MB from a loop of small pieces, and from title, body and data together.
    big = Template(body="{% for i in range(100000) %}{{ 'y' * 100 }}{% endfor %}")
    outcome = render_outcome(big, CONTEXT, max_chars=100_000)
    assert isinstance(outcome, Unrendered) and outcome.reason == RENDER_TOO_LARGE
    assert "over 100,000 characters" in outcome.detail
    parts = Template(
        title="{{ 'a' * 40000 }}", body="{{ 'b' * 40000 }}", data={"k": "{{ 'c' * 40000 }}"}
    )
    assert render_outcome(parts, CONTEXT, max_chars=100_000).reason == RENDER_TOO_LARGE  # type: ignore[union-attr]
    assert render(parts, CONTEXT, max_chars=120_000).data["k"] == "c" * 40000


def test_ordinary_arithmetic_formatting_and_filters_still_work() -> None:
    source = (
        "{{ user.first_name|upper }} {{ 2 ** 64 }} {{ 'ab' * 3 }} {{ 7 // 2 }} {{ -3 + 1 }}"
        " {{ '{:,}'.format(user.revenue) }} {{ '%.2f'|format(9.5) }} {{ '%05d' % 42 }}"
        " {{ 'x'|center(5) }}|{{ [1, 2] * 2 }} {{ user.revenue|round|int }}"
    )
    assert render(Template(body=source), CONTEXT).body == (
        "ADA 18446744073709551616 ababab 3 -2 250,000 9.50 00042   x  |[1, 2, 1, 2] 250000"
    )


def test_missing_variables_are_their_own_outcome() -> None:
    outcome = render_outcome(
        Template(body="{{ user.nickname }}", suppress_on_missing=True), CONTEXT
    )
    assert isinstance(outcome, Unrendered) and outcome.reason == MISSING_VARIABLE


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("{% include 'other' %}", "{% include %} is not available"),
        ("{% extends 'base' %}", "{% extends %} is not available"),
        ("{% import 'm' as m %}", "{% import %} is not available"),
        ("{% autoescape 'x'|center(100000000) %}{% endautoescape %}", "autoescape"),
        ("{{" + "(" * 5000 + "1" + ")" * 5000 + "}}", "nested too deeply"),
        ("{%if 1%}" * 1000 + "{%endif%}" * 1000, "not a valid template"),
    ],
)
def test_templates_that_reach_outside_or_nest_too_deep_are_refused(
    source: str, problem: str
) -> None:
    assert problem in (check_template(source) or "")
