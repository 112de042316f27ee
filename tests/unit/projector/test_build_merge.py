"""A segment version's build is handed to the fold explicitly: asked for, loaded, merged."""

from __future__ import annotations

import pytest

from services.projector.domain.changeset import ConsumedBuild, SegmentActivated
from services.projector.domain.engine import Engine
from tests.support.logevents import MINUTE, T0, identify, tick, track
from tests.support.segments import Definitions

TWICE = {"events": {"name": "Bought", "aggregate": "count", "op": ">=", "value": 2}}


def defined(engine: Engine, definitions: Definitions, position: int) -> int:
    """Apply a tick and the definition of `twice`; the position reached."""
    for event in [tick(T0), *definitions.define("twice", TWICE)]:
        position += 1
        engine.apply(event, position)
    return position


def test_the_build_asked_for_is_merged_with_what_was_tracked_since() -> None:
    engine = Engine(require_builds=True)
    definitions = Definitions()
    engine.apply(track("", T0 - MINUTE, "Seen", anonymous_id="dev"), 1)
    engine.apply(identify("u2", T0 - MINUTE, anonymous_id="dev"), 2)
    position = defined(engine, definitions, 2)
    engine.apply(track("u1", T0 + MINUTE, "Bought"), position + 1)
    engine.drain()
    [built] = definitions.built("twice", position)

    request = engine.build_wanted(built)
    assert request is not None
    assert (request.app_id, request.segment_id, request.version) == ("app", "twice", 1)
    assert request.through_position == position  # the definition's
    [spec] = request.specs
    # One purchase each before the definition: u1 by id, u2 as the anonymous id they were.
    once = [1, 0.0, None, None, 0]
    history = {"u1": {spec.key: list(once)}, "anonymous:dev": {spec.key: list(once)}}
    engine.merge_build(built, position + 2, history)

    drained = engine.drain()
    entered = {(c.user_id, c.to_value) for c in drained.changes if c.segment_id == "twice"}
    assert entered == {("u1", "entered")}  # 1 + 1 live; u2 has 1 only
    assert engine.users[("app", "u2")].trackers[spec.key][0] == 1
    assert drained.consumed_builds == [ConsumedBuild("app", "twice", 1)]
    assert [type(r) for r in drained.segment_records] == [SegmentActivated]


def test_a_projector_engine_refuses_a_build_without_its_history() -> None:
    engine = Engine(require_builds=True)
    definitions = Definitions()
    position = defined(engine, definitions, 0)
    [built] = definitions.built("twice", position)
    with pytest.raises(TypeError, match="merge_build"):
        engine.apply(built, position + 1)
    assert engine.segments["app"].pending  # still building


def test_a_superseded_or_archived_version_wants_no_build() -> None:
    engine = Engine(require_builds=True)
    definitions = Definitions()
    position = defined(engine, definitions, 0)
    [first] = definitions.built("twice", position)
    for event in definitions.redefine("twice", {"lifecycle": ["new"]}):
        position += 1
        engine.apply(event, position)
    [second] = definitions.built("twice", position)
    assert engine.build_wanted(first) is None
    assert engine.build_wanted(second) is not None
    for event in definitions.archive("twice"):
        position += 1
        engine.apply(event, position)
    assert engine.build_wanted(second) is None
