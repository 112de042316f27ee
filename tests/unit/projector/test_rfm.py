"""RFM scores, groups, and when RFM changes are published."""

from __future__ import annotations

import pytest

from services.projector.domain import rfm
from services.projector.domain.engine import Engine
from services.projector.domain.policy import AppPolicy, RfmPolicy
from tests.support.logevents import DAY, HOUR, T0, purchase, tick, track


@pytest.mark.parametrize(
    ("scores", "group"),
    [
        ((5, 5, 5), "champions"),
        ((5, 4, 4), "champions"),
        ((4, 5, 5), "champions"),
        ((4, 4, 3), "loyal"),
        ((3, 5, 4), "loyal"),
        ((5, 2, 3), "potential_loyalists"),
        ((5, 1, 1), "new_customers"),
        ((4, 1, 1), "promising"),
        ((3, 3, 3), "need_attention"),
        ((3, 2, 2), "about_to_sleep"),
        ((2, 4, 5), "at_risk"),
        ((1, 5, 5), "cant_lose_them"),
        ((2, 1, 1), "hibernating"),
        ((1, 1, 1), "lost"),
    ],
)
def test_named_groups(scores: tuple[int, int, int], group: str) -> None:
    assert rfm.group_of(*scores) == group


def test_every_score_combination_has_a_group() -> None:
    groups = {rfm.group_of(r, f, m) for r in range(1, 6) for f in range(1, 6) for m in range(1, 6)}
    assert groups == set(rfm.RFM_GROUPS)


def test_quintiles_split_ten_distinct_values_evenly() -> None:
    values = [rfm.RfmValues(last_purchase_us=i, purchases=i, amount=10.0 * i) for i in range(1, 11)]
    q = rfm.Quintiles.of(values)
    assert [q.scores(v)[2] for v in values] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_ties_share_a_score_and_single_buyers_score_low() -> None:
    counts = [1] * 7 + [2, 2, 3]
    values = [rfm.RfmValues(0, c, 1.0) for c in counts]
    q = rfm.Quintiles.of(values)
    assert [q.scores(v)[1] for v in values] == [1] * 7 + [4, 4, 5]


def changes(engine: Engine) -> list[tuple[str, str, str, str]]:
    return [
        (c.user_id, c.from_value, c.to_value, c.cause)
        for c in engine.drain().changes
        if c.kind == "rfm"
    ]


def test_purchases_publish_group_changes_and_recomputation_moves_others() -> None:
    engine = Engine(AppPolicy(rfm=RfmPolicy(recompute_minutes=60)))
    engine.apply(tick(T0), 1)
    # Ten buyers with growing spend; quintiles are recomputed as the purchaser count grows.
    for i in range(10):
        engine.apply(purchase(f"u{i}", T0 + i * HOUR // 20, revenue=10.0 * (i + 1)), 2 + i)
    first = changes(engine)
    assert {c[0] for c in first} == {f"u{i}" for i in range(10)}
    assert all(c[1] == "" or c[3] in ("event", "recomputation") for c in first)
    # A month later, a scheduled recomputation: everyone got older, u9 buys again.
    engine.apply(purchase("u9", T0 + 30 * DAY, revenue=500.0), 20)
    engine.apply(tick(T0 + 30 * DAY + HOUR), 21)
    groups = {u.user_id: u.rfm_group for u in engine.users.values()}
    assert groups["u9"] == "champions"
    assert groups["u0"] in ("lost", "hibernating")


def test_purchases_leaving_the_window_drop_the_user_out_of_rfm() -> None:
    engine = Engine(AppPolicy(rfm=RfmPolicy(window_days=30, recompute_minutes=60)))
    engine.apply(purchase("u", T0, revenue=5.0), 1)
    (entered,) = changes(engine)
    assert entered[1:] == ("", entered[2], "event")
    assert entered[2] != ""
    engine.apply(tick(T0 + 31 * DAY), 2)
    assert changes(engine) == [("u", entered[2], "", "recomputation")]
    assert engine.users[("app", "u")].rfm_group == ""
    assert engine.users[("app", "u")].purchases == {}


def test_non_purchase_events_do_not_touch_rfm() -> None:
    engine = Engine()
    engine.apply(track("u", T0, revenue=100.0), 1)
    assert changes(engine) == []


def test_users_pack_and_unpack_to_equal_users() -> None:
    import orjson

    from services.projector.domain.user import User

    engine = Engine()
    engine.apply(purchase("u", T0, revenue=12.5), 1)
    engine.apply(track("u", T0 + DAY), 2)
    user = engine.users[("app", "u")]
    stored = orjson.dumps(user.pack(), option=orjson.OPT_NON_STR_KEYS)
    assert User.unpack(orjson.loads(stored)) == user


def test_change_ids_are_standard_uuid5() -> None:
    import uuid

    from services.projector.domain.changes import CHANGES_NAMESPACE, change_id

    for args in [("app", "u", 1, "lifecycle", 10), ("a", "ü", 99, "rfm", 2**40)]:
        name = "\x1f".join(str(a) for a in args)
        assert change_id(*args) == str(uuid.uuid5(CHANGES_NAMESPACE, name))  # type: ignore[arg-type]
