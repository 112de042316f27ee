"""Deterministic assignment, send ids and holdout."""

from __future__ import annotations

from collections import Counter

from services.campaign.domain.assignment import (
    CONTROL,
    assign,
    in_global_holdout,
    send_id,
)
from services.campaign.domain.model import Template, Variant

VARIANTS = (
    Variant(name="A", weight=1, template=Template()),
    Variant(name="B", weight=3, template=Template()),
)


def test_the_same_inputs_give_the_same_assignment() -> None:
    first = [assign(f"u{i}", "c1", "salt", 20, VARIANTS) for i in range(200)]
    assert first == [assign(f"u{i}", "c1", "salt", 20, VARIANTS) for i in range(200)]
    # Another salt reshuffles.
    assert first != [assign(f"u{i}", "c1", "other", 20, VARIANTS) for i in range(200)]


def test_control_share_and_weights_hold_over_many_users() -> None:
    counts = Counter(assign(f"user-{i}", "c1", "s", 20, VARIANTS) for i in range(20_000))
    assert abs(counts[CONTROL] / 20_000 - 0.20) < 0.015
    assert abs(counts["B"] / (counts["A"] + counts["B"]) - 0.75) < 0.015


def test_send_id_depends_on_version_user_and_change() -> None:
    base = send_id("c1", 1, "u1", "chg-1")
    assert base == send_id("c1", 1, "u1", "chg-1")
    assert (
        len(
            {
                base,
                send_id("c1", 2, "u1", "chg-1"),
                send_id("c1", 1, "u2", "chg-1"),
                send_id("c1", 1, "u1", "chg-2"),
            }
        )
        == 4
    )


def test_holdout_share() -> None:
    held = sum(in_global_holdout("shop", f"u{i}", "", 10) for i in range(20_000))
    assert abs(held / 20_000 - 0.10) < 0.01
    assert not any(in_global_holdout("shop", f"u{i}", "", 0) for i in range(1000))
