"""A drained batch becomes rows per read model without a database: what each table gets."""

from __future__ import annotations

import orjson

from services.common.jetstream import ChangeSubjects
from services.projector.adapters.projection.rows import (
    DefinedRow,
    MemberRow,
    PreparedBatch,
    prepare,
)
from services.projector.domain.changeset import ConsumedBuild, SegmentActivated
from services.projector.domain.engine import Engine
from services.projector.domain.policy import AppPolicy, LifecyclePolicy
from services.projector.domain.user import User
from tests.support.logevents import MINUTE, T0, identify, purchase, tick, track
from tests.support.segments import Definitions

SUBJECTS = ChangeSubjects("test.changes")
PRO = {"trait": {"key": "plan", "op": "=", "value": "pro"}}


def folded(*events: object, silent_redefinition: bool = False) -> PreparedBatch:
    """The rows of one batch: a segment defined and built first, then `events`."""
    engine = Engine(AppPolicy(lifecycle=LifecyclePolicy(adaptive=False)), facts=True)
    definitions = Definitions()
    log = [tick(T0), *definitions.define("pro", PRO)]
    log += definitions.built("pro", len(log))
    log += list(events)
    if silent_redefinition:
        log += definitions.redefine(
            "pro", {"trait": {"key": "plan", "op": "=", "value": "x"}}, silent=True
        )
        log += definitions.built("pro", len(log))
    engine.apply_all((event, position) for position, event in enumerate(log, 1))
    return prepare(engine.drain(), SUBJECTS)


def test_profiles_get_hot_columns_with_the_packed_state_and_identify_fields() -> None:
    batch = folded(
        track("u1", T0 + MINUTE, context={"country": "DE"}),
        identify("u1", T0 + 2 * MINUTE, traits={"plan": "pro"}, contact={"email": "a@b"}),
    )
    [hot] = batch.profiles.hot
    assert hot[:3] == ("app", "u1", "new")
    assert hot[11] == "DE"  # the best location known
    state = User.unpack(orjson.loads(hot[10]))
    assert state.traits == {"plan": "pro"} and "pro" in state.memberships
    [fields] = batch.profiles.fields
    assert orjson.loads(fields[0]) == {"plan": "pro"}
    assert fields[2] == "a@b" and fields[-2:] == ("app", "u1")
    assert batch.profiles.deleted == []


def test_changes_go_to_the_timeline_and_the_published_ones_to_the_outbox() -> None:
    batch = folded(
        identify("u1", T0 + MINUTE, traits={"plan": "pro"}),
        track("u1", T0 + MINUTE),
        silent_redefinition=True,
    )
    kinds = [(row[4], row[6]) for row in batch.changes.changes]
    assert kinds == [
        ("membership", "entered"),
        ("lifecycle", "new"),
        ("membership", "exited"),
    ]
    assert batch.change_count == 3
    membership = batch.changes.changes[0]
    assert membership[-1].obj == {"segment_id": "pro", "segment_version": 1, "published": True}
    assert membership[-1].dumps is orjson.dumps  # orjson per value: no global JSON setting
    # The silent redefinition's exit is recorded, not published.
    subjects = [row[0] for row in batch.changes.outbox]
    assert subjects == ["test.changes.app.segment.pro", "test.changes.app.lifecycle"]
    assert [row[1] for row in batch.changes.outbox] == [row[3] for row in batch.changes.changes[:2]]
    assert batch.segments.members == [
        MemberRow("app", "pro", "u1", 1, T0 + MINUTE, True),
        MemberRow("app", "pro", "u1", 2, T0 + MINUTE, False),
    ]


def test_segment_records_carry_their_definition_as_json() -> None:
    batch = folded()
    defined, activated = batch.segments.records
    assert isinstance(defined, DefinedRow)
    record = defined.record
    assert (record.app_id, record.segment_id, record.version) == ("app", "pro", 1)
    assert orjson.loads(defined.definition) == PRO and record.silent is False
    assert activated == SegmentActivated("app", "pro", 1, 3, T0)
    assert batch.segments.consumed_builds == [ConsumedBuild("app", "pro", 1)]
    [(app, state)] = batch.segments.states
    assert app == "app" and orjson.loads(state)["active"] == {"pro": 1}


def test_a_merge_moves_facts_and_drops_the_anonymous_profile_and_memberships() -> None:
    batch = folded(
        track("", T0 + MINUTE, anonymous_id="dev"),
        identify("u1", T0 + 2 * MINUTE, anonymous_id="dev"),
    )
    assert batch.profiles.deleted == [("app", "anonymous:dev")]
    assert batch.facts.moved == [("u1", "app", "anonymous:dev")]
    assert batch.segments.merged == [("app", "anonymous:dev")]
    assert batch.apps.aliases == [("app", "dev", "u1")]


def test_facts_and_app_states_are_plain_rows() -> None:
    batch = folded(purchase("u1", T0 + MINUTE, 9.5), tick(T0 + 5 * MINUTE))
    names = [(row[1], row[2]) for row in batch.facts.facts]
    assert names == [("", "$tick"), ("u1", "Order Completed"), ("", "$tick")]
    assert batch.facts.facts[1][5].obj == {"revenue": 9.5}
    [(app, state)] = batch.apps.apps
    assert app == "app" and orjson.loads(state)["quintiles"]["purchasers"] == 1
    assert batch.now_us == T0 + 5 * MINUTE
