"""RFM scores, groups, and when RFM changes are published."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.projector.domain import rfm
from services.projector.domain.engine import Engine
from services.projector.domain.policy import AppPolicy, RfmPolicy
from services.projector.domain.rfm_index import RfmIndex
from tests.support.logevents import DAY, HOUR, MINUTE, T0, purchase, tick, track

SECOND = 1_000_000


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


def test_ties_at_a_recency_cut_point_share_the_best_score() -> None:
    # Half the purchasers bought at the same, latest moment: all of them score 5.
    times = [1, 2, 3, 4, 5, 9, 9, 9, 9, 9]
    values = [rfm.RfmValues(t, 1, 1.0) for t in times]
    q = rfm.Quintiles.of(values)
    assert [q.scores(v)[0] for v in values] == [1, 1, 2, 2, 3, 5, 5, 5, 5, 5]


@pytest.mark.parametrize(
    ("purchasers", "expected"),
    [
        # (last purchase, purchases, amount) -> scores: the same rule for any population.
        ([(10, 1, 20.0)], [(5, 1, 1)]),
        ([(10, 1, 20.0), (10, 1, 20.0)], [(5, 1, 1), (5, 1, 1)]),
        ([(5, 1, 10.0), (10, 1, 50.0)], [(3, 1, 1), (5, 1, 3)]),
        ([(5, 3, 90.0), (7, 1, 10.0), (10, 1, 20.0)], [(2, 4, 4), (4, 1, 1), (5, 1, 2)]),
    ],
)
def test_small_populations_follow_the_same_rank_rule(
    purchasers: list[tuple[int, int, float]], expected: list[tuple[int, int, int]]
) -> None:
    values = [rfm.RfmValues(*p) for p in purchasers]
    q = rfm.Quintiles.of(values)
    assert [tuple(q.scores(v)) for v in values] == expected
    assert [tuple(independent(values, v)) for v in values] == expected


def independent(population: list[rfm.RfmValues], mine: rfm.RfmValues) -> list[int]:
    """The documented rule, straight from ranks (no cut points)."""
    n = len(population)
    last = sum(1 for v in population if v.last_purchase_us <= mine.last_purchase_us)
    fewer = sum(1 for v in population if v.purchases < mine.purchases)
    less = sum(1 for v in population if v.amount < mine.amount)
    return [math.ceil(5 * last / n), 1 + 5 * fewer // n, 1 + 5 * less // n]


def changes(engine: Engine) -> list[tuple[str, str, str, str]]:
    return [
        (c.user_id, c.from_value, c.to_value, c.cause)
        for c in engine.drain().changes
        if c.kind == "rfm"
    ]


def test_the_first_purchaser_of_an_app_is_a_new_customer_not_lost() -> None:
    engine = Engine()
    engine.apply(tick(T0), 1)
    engine.apply(purchase("u", T0 + 20 * SECOND, revenue=5.0), 2)
    assert changes(engine) == []  # scored at the next tick, against cut points that count it
    engine.apply(tick(T0 + MINUTE), 3)
    ((change,),) = [[c for c in engine.drain().changes if c.kind == "rfm"]]
    assert (change.to_value, change.scores, change.cause) == ("new_customers", (5, 1, 1), "event")
    assert change.effective_us == T0 + 20 * SECOND  # dated at the purchase
    assert change.event_ids == (change.event_ids[0],) and change.event_name == "Order Completed"
    assert (change.purchases, change.amount) == (1, 5.0)


def test_whoever_just_bought_is_never_in_a_recency_bottom_group() -> None:
    engine = Engine()
    engine.apply(tick(T0), 1)
    for i in range(30):  # thirty buyers over a month, then one more now
        engine.apply(purchase(f"u{i}", T0 + i * DAY, revenue=10.0), 2 + i)
    engine.apply(tick(T0 + 30 * DAY), 40)
    engine.apply(purchase("late-comer", T0 + 30 * DAY + SECOND, revenue=1.0), 41)
    engine.apply(tick(T0 + 30 * DAY + MINUTE), 42)
    assert engine.users[("app", "late-comer")].rfm_scores[0] == 5
    assert engine.users[("app", "u0")].rfm_scores[0] == 1


def test_a_purchase_moves_others_scores_only_through_fresh_cut_points() -> None:
    engine = Engine()
    engine.apply(tick(T0), 1)
    for i in range(10):
        engine.apply(purchase(f"u{i}", T0 + i * SECOND, revenue=10.0 * (i + 1)), 2 + i)
    engine.apply(tick(T0 + MINUTE), 20)
    first = changes(engine)
    assert {c[0] for c in first} == {f"u{i}" for i in range(10)}
    assert all(c[3] == "event" for c in first)
    # u0 buys big: their monetary score jumps, and the cut points move for others.
    engine.apply(purchase("u0", T0 + 2 * MINUTE, revenue=1000.0), 21)
    assert changes(engine) == []
    engine.apply(tick(T0 + 3 * MINUTE), 22)
    # u0 is now the latest and biggest buyer; u2 and u6 slip below cut points that moved.
    assert changes(engine) == [
        ("u0", "lost", "champions", "event"),
        ("u2", "about_to_sleep", "lost", "recomputation"),
        ("u6", "potential_loyalists", "about_to_sleep", "recomputation"),
    ]
    check_fresh(engine, T0 + 3 * MINUTE)


def test_purchases_leaving_the_window_drop_the_user_out_of_rfm() -> None:
    engine = Engine(AppPolicy(rfm=RfmPolicy(window_days=30)))
    engine.apply(tick(T0), 1)
    engine.apply(purchase("u", T0, revenue=5.0), 2)
    engine.apply(tick(T0 + HOUR), 3)
    ((_, before, after, cause),) = changes(engine)
    assert (before, after, cause) == ("", "new_customers", "event")
    engine.apply(tick(T0 + 31 * DAY), 4)
    assert changes(engine) == [("u", "new_customers", "", "recomputation")]
    assert engine.users[("app", "u")].rfm_group == ""
    assert engine.users[("app", "u")].purchases == {}


def check_fresh(engine: Engine, at: int, app: str = "app", window_days: int = 365) -> int:
    """Every user's scores equal the documented rule over all purchases folded so far (in
    the window of the UTC day of `at`), computed from scratch. Returns the purchasers."""
    first = at // DAY - window_days + 1
    population: dict[str, rfm.RfmValues] = {}
    for (a, user_id), user in engine.users.items():
        days = [(d, c, m) for d, (c, m) in user.purchases.items() if d >= first]
        if a == app and days and user.last_purchase_us is not None:
            population[user_id] = rfm.RfmValues(
                user.last_purchase_us, sum(int(c) for _, c, _ in days), sum(m for *_, m in days)
            )
    for (a, user_id), user in engine.users.items():
        if a != app:
            continue
        if user_id not in population:
            assert (user.rfm_scores, user.rfm_group) == ([], ""), user_id
            continue
        expected = independent(list(population.values()), population[user_id])
        assert user.rfm_scores == expected, user_id
        assert user.rfm_group == rfm.group_of(*expected), user_id
        mine = population[user_id]
        assert user.rfm_values == [mine.last_purchase_us, mine.purchases, mine.amount]
    return len(population)


step = st.one_of(
    st.tuples(st.just("tick"), st.sampled_from([1, 30, 60, 6 * 60, 24 * 60, 40 * 24 * 60])),
    st.tuples(
        st.just("buy"),
        st.integers(min_value=0, max_value=15),  # who
        st.sampled_from([0, 0, 0, 5, 60, 3 * 24 * 60]),  # minutes late
        st.sampled_from([1.0, 5.0, 5.0, 20.0, 99.5, 250.0]),
    ),
    # A bulk import into an app already scored: a year of purchases of many users at once.
    st.tuples(st.just("bulk"), st.integers(min_value=1, max_value=40), st.randoms()),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, min_size=1, max_size=40))
def test_scores_after_every_tick_equal_a_fresh_quintile_computation(steps: list) -> None:
    policy = AppPolicy(rfm=RfmPolicy(window_days=60))
    engine = Engine(policy)
    now, position = T0, 1
    engine.apply(tick(now), position)
    for item in steps:
        position += 1
        if item[0] == "tick":
            now += item[1] * MINUTE
            engine.apply(tick(now), position)
            check_fresh(engine, now, window_days=60)
            # Every RFM change published comes from such a computation too.
            for change in engine.drain().changes:
                if change.kind == "rfm":
                    user = engine.users[("app", change.user_id)]
                    assert list(change.scores or ()) == user.rfm_scores
                    assert change.to_value == user.rfm_group
        elif item[0] == "buy":
            _, who, late, amount = item
            engine.apply(purchase(f"u{who}", now - late * MINUTE, revenue=amount), position)
        else:
            _, users, rng = item
            for _ in range(users * 5):
                when = now - rng.randrange(0, 365 * 24 * 60) * MINUTE
                user = f"b{rng.randrange(users)}"
                position += 1
                engine.apply(purchase(user, when, revenue=rng.choice([3.0, 30.0, 300.0])), position)


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


def test_the_index_cut_points_are_computed_once_per_state_of_the_values() -> None:
    index = RfmIndex()
    index.rebuild({f"u{n}": rfm.RfmValues(T0 + n * DAY, n + 1, 10.0 * n) for n in range(10)})
    first = index.quintiles()
    assert index.quintiles() is first  # nothing moved: the same cut points
    index.put("u0", rfm.RfmValues(T0 + 20 * DAY, 50, 900.0))
    moved = index.quintiles()
    assert moved is not first and moved != first
    values = list(index.values.values())
    assert moved == rfm.Quintiles.of(values)
    index.put("u0", None)
    assert index.quintiles().purchasers == 9
