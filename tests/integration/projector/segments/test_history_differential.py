"""The set-based history path gives exactly the incremental path's result.

The same random history is folded twice: by a pure engine with every segment
defined before the first event (incremental, the reference), and by the projector
on PostgreSQL with the segments defined after the whole history, so each version
is built set-based in SQL over the facts and merged in. Memberships and tracker
states must be identical.
"""

from __future__ import annotations

from typing import Any

import pytest

from services.projector.domain.segments import trackers as tr
from tests.support.projector import in_process_projector
from tests.support.segment_history import (
    PROFILE_SEGMENTS,
    SEGMENTS,
    drafts_and_live,
    history,
    profiled_history,
    reference,
    save_segments,
    wait_settled,
)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_set_based_build_equals_incremental(
    database_url: str, nats_server: Any, seed: int
) -> None:
    events = history(seed)
    expected = reference(events)
    async with in_process_projector(database_url, nats_server.url) as running:
        app, log = running.app, running.log
        log.append_new([log.encode(e) for e in events])
        save_segments(log, SEGMENTS)
        await wait_settled(app, log, len(SEGMENTS))
        with app.store.cursor() as curs:
            curs.execute("SELECT segment_id, user_id FROM segment_members ORDER BY 1, 2")
            built = {(r["segment_id"], r["user_id"]) for r in curs.fetchall()}
            curs.execute("SELECT state FROM projector_profiles")
            import orjson

            from services.projector.domain.user import User

            stored = {
                u.user_id: u
                for u in (User.unpack(orjson.loads(r["state"])) for r in curs.fetchall())
            }
        incremental = {(s, u.user_id) for u in expected.users.values() for s in u.memberships}
        assert built == incremental
        assert len(incremental) > 10
        # Tracker states agree too, once both are pruned to the same clock.
        specs = {
            k: spec
            for seg in expected.segments["app"].active.values()
            for k, spec in seg.trackers.items()
        }
        for user_id, user in stored.items():
            mine = expected.users[("app", user_id)].trackers
            for key, spec in specs.items():
                a = tr.prune(spec, _copy(user.trackers.get(key)), expected.now_us)
                b = tr.prune(spec, _copy(mine.get(key)), expected.now_us)
                assert _norm(a) == _norm(b), (user_id, key)


def _copy(state: Any) -> Any:
    import copy

    return copy.deepcopy(state)


def _norm(state: Any) -> Any:
    if isinstance(state, list):
        return [_norm(x) for x in state]
    if isinstance(state, float) and state.is_integer():
        return int(state)
    return state


@pytest.mark.parametrize("seed", [4, 5])
async def test_preview_query_equals_live_membership(
    database_url: str, nats_server: Any, seed: int
) -> None:
    """The whole-definition SQL (previews, history queries) gives the live members."""
    events = profiled_history(seed)
    everything = {**SEGMENTS, **PROFILE_SEGMENTS}
    async with in_process_projector(database_url, nats_server.url) as running:
        app, log = running.app, running.log
        log.append_new([log.encode(e) for e in events[:150]])
        save_segments(log, everything)  # defined midway, built from history
        log.append_new([log.encode(e) for e in events[150:]])
        await wait_settled(app, log, len(everything))
        live_total = 0
        for segment_id, (draft, live) in drafts_and_live(database_url, everything).items():
            assert draft == live, segment_id
            live_total += len(live)
        assert live_total > 20
