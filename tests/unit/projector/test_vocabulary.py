"""Lifecycle states and RFM groups: the stored names, and one proto number for each."""

from __future__ import annotations

from cohortflow.types.v1 import types_pb2

from services.campaign.proto_names import lifecycle_name, rfm_name
from services.common.vocabulary_wire import (
    LIFECYCLE_STATE_OF_PB,
    LIFECYCLE_STATE_PB,
    RFM_GROUP_OF_PB,
    RFM_GROUP_PB,
)
from services.eventlog.vocabulary import LIFECYCLE_STATES, RFM_GROUPS, LifecycleState, RfmGroup
from services.projector.domain.engine import Engine
from services.projector.domain.user import User
from tests.support.logevents import MINUTE, T0, purchase, tick


def test_the_stored_names_and_their_order_stay_as_they_were() -> None:
    # Stored in profiles, changes, definitions and rollup keys: a rename breaks old rows.
    assert LIFECYCLE_STATES == ("new", "active", "loyal", "dormant", "churned", "reactivated")
    assert RFM_GROUPS == (
        "champions",
        "loyal",
        "potential_loyalists",
        "new_customers",
        "promising",
        "need_attention",
        "about_to_sleep",
        "at_risk",
        "cant_lose_them",
        "hibernating",
        "lost",
    )
    assert LifecycleState.NONE == RfmGroup.NONE == ""


def test_every_proto_value_has_exactly_one_name_and_back() -> None:
    for enum, to_pb, of_pb, names in (
        (types_pb2.LifecycleState, LIFECYCLE_STATE_PB, LIFECYCLE_STATE_OF_PB, LIFECYCLE_STATES),
        (types_pb2.RfmGroup, RFM_GROUP_PB, RFM_GROUP_OF_PB, RFM_GROUPS),
    ):
        numbers = {n for n in enum.values() if n != 0}
        assert set(of_pb) == numbers
        assert sorted(to_pb[name] for name in names) == sorted(numbers)
        assert to_pb[""] == 0
        assert all(of_pb[to_pb[name]] == name for name in names)
        assert all(type(name) is str for name in of_pb.values())  # they go into stored dicts


def test_campaign_reads_the_numbers_as_the_projector_writes_them() -> None:
    assert all(lifecycle_name(n) == name for n, name in LIFECYCLE_STATE_OF_PB.items())
    assert all(rfm_name(n) == name for n, name in RFM_GROUP_OF_PB.items())
    assert lifecycle_name(0) == rfm_name(0) == ""


def test_the_fold_keeps_and_publishes_plain_strings() -> None:
    # orjson writes a str much faster than an enum member, and users are packed per batch.
    engine = Engine()
    engine.apply_all(
        (event, position)
        for position, event in enumerate(
            [tick(T0), purchase("u", T0 + MINUTE, 5.0), tick(T0 + 2 * MINUTE)], 1
        )
    )
    user = engine.users[("app", "u")]
    assert (user.state, user.rfm_group) == ("new", "new_customers")
    assert type(user.state) is str and type(user.rfm_group) is str
    changes = engine.drain().changes
    assert {c.kind for c in changes} == {"lifecycle", "rfm"}
    assert all(type(c.from_value) is str and type(c.to_value) is str for c in changes)
    assert type(User(app_id="app", user_id="v").state) is str
