"""Erasure end to end on real PostgreSQL and NATS: ingest (EraseUser over gRPC, sealing)
and the projector in this process, a rebuild as a process.

Personal data is gone from every table that held it, the user left every segment with
cause ERASURE, the audit record stays, and a rebuild after the erasure reproduces every
other user's changes exactly (`rebuild --check` and a row-by-row comparison).
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import psycopg
import pytest
from cohortflow.ingest.v1 import privacy_pb2, privacy_pb2_grpc

from services.common.grpc.auth import ApiKeys
from services.common.grpc.errors import bad_request_of
from services.eventlog.events import EventTracked, UserIdentified
from services.eventlog.keyring import Keyring
from services.eventlog.sealing import ERASED
from services.ingest.bootstrap import start_ingest
from services.ingest.config import IngestSettings
from services.ingest.sealer import Sealer
from tests.support.eventlog import sealed_events, stored_events
from tests.support.logevents import MINUTE, T0, identify, track
from tests.support.processes import rebuild
from tests.support.projector import in_process_projector
from tests.support.segment_history import (
    PROFILE_SEGMENTS,
    SEGMENTS,
    profiled_history,
    save_segments,
)

VICTIM = "u1"
SUBJECTS = (VICTIM, "anonymous:anon-u1")
EMAIL = "victim@example.com"
_CHANGES = (
    "SELECT app_id, user_id, sequence, change_id, kind, from_value, to_value, cause,"
    " effective_us, position, details::text FROM {}.projector_changes"
    " WHERE NOT (user_id = ANY(%s)) ORDER BY app_id, user_id, sequence"
)


def victim_extras() -> list[object]:
    """The victim browsed anonymously first (with a place), then signed up (contact)."""
    return [
        track("", T0 + 5 * MINUTE, "A", anonymous_id="anon-u1", context={"city": "Lyon"}),
        identify(
            VICTIM,
            T0 + 6 * MINUTE,
            anonymous_id="anon-u1",
            traits={"plan": "pro", "age": 44.0},
            contact={"email": EMAIL},
            consents={"email": True},
            location={"country": "DE", "city": "Berlin"},
        ),
    ]


def rows(database_url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(query, params).fetchall()


async def settle(projector: Any, database_url: str) -> None:
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        head = projector.log.head_position()
        building = rows(database_url, "SELECT count(*) FROM segments WHERE state <> 'active'")
        if projector.app.projection.position >= head and not building[0][0]:
            return
        assert asyncio.get_running_loop().time() < deadline, "the projector did not settle"
        await asyncio.sleep(0.1)


async def test_erasure_removes_personal_data_and_a_rebuild_keeps_everyone_else(
    database_url: str, nats_server: Any
) -> None:
    ingest = await start_ingest(
        IngestSettings(
            DATABASE_URL=database_url, INGEST_LISTEN="127.0.0.1:0", INGEST_HTTP_LISTEN="0"
        ),
        ApiKeys([("app", "key-app")]),
    )
    try:
        async with in_process_projector(database_url, nats_server.url) as projector:
            log = projector.log
            # The history sealed as ingest seals it (with chosen times).
            sealer = Sealer(Keyring(log.log_recorder.datastore))
            events = sealer.seal_all(profiled_history(9) + victim_extras())
            log.append_new([log.encode(e) for e in events[:200]])
            save_segments(log, {**SEGMENTS, **PROFILE_SEGMENTS})
            log.append_new([log.encode(e) for e in events[200:]])
            await settle(projector, database_url)
            inside = rows(
                database_url,
                "SELECT segment_id FROM segment_members WHERE user_id = %s ORDER BY 1",
                VICTIM,
            )
            assert len(inside) >= 3  # pro, dach, old-enough, ... : something to leave
            others_before = rows(database_url, _CHANGES.format("public"), list(SUBJECTS))
            assert len(others_before) > 50
            assert rows(
                database_url, "SELECT email FROM projector_profiles WHERE user_id = %s", VICTIM
            ) == [(EMAIL,)]

            async with grpc.aio.insecure_channel(f"127.0.0.1:{ingest.port}") as channel:
                privacy = privacy_pb2_grpc.PrivacyServiceStub(channel)
                metadata = (("authorization", "Bearer key-app"),)
                request = privacy_pb2.EraseUserRequest(
                    user_id=VICTIM, requested_by="dpo ticket 42", request_id="r-1"
                )
                first = await privacy.EraseUser(request, metadata=metadata)
                again = await privacy.EraseUser(request, metadata=metadata)
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await privacy.EraseUser(
                        privacy_pb2.EraseUserRequest(request_id="bad id\n"), metadata=metadata
                    )
                with pytest.raises(grpc.aio.AioRpcError) as reused:
                    await privacy.EraseUser(
                        privacy_pb2.EraseUserRequest(
                            user_id="u2", requested_by="dpo", request_id="r-1"
                        ),
                        metadata=metadata,
                    )
            assert first.keys_destroyed == 2 and list(first.anonymous_ids) == ["anon-u1"]
            assert again == first  # idempotent: answered from the audit record
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert {f for f, _ in bad_request_of(refused.value)} == {
                "user_id",
                "requested_by",
                "request_id",
            }
            assert reused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert [f for f, _ in bad_request_of(reused.value)] == ["request_id"]
            await settle(projector, database_url)

            # The user left every segment they were in, with cause ERASURE.
            left = rows(
                database_url,
                "SELECT details->>'segment_id', to_value FROM projector_changes"
                " WHERE user_id = %s AND cause = 'erasure' ORDER BY 1",
                VICTIM,
            )
            assert left == [(s, "exited") for (s,) in inside]
            assert (
                rows(database_url, "SELECT * FROM segment_members WHERE user_id = %s", VICTIM) == []
            )
            assert_no_personal_data(database_url, log)
            # Everyone else's changes are untouched by the erasure.
            assert rows(database_url, _CHANGES.format("public"), list(SUBJECTS)) == others_before

        # A rebuild after the erasure: the check skips only the erased user's changes ...
        checked = await asyncio.to_thread(rebuild, database_url, "--schema", "rb_e", "--check")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "check: identical" in checked.stdout
        # ... and a kept rebuild reproduces every other user's changes row for row, while the
        # erased user ends outside every segment with their fields erased.
        kept = await asyncio.to_thread(rebuild, database_url, "--schema", "rb_k", "--keep")
        assert kept.returncode == 0, kept.stderr
        assert rows(database_url, _CHANGES.format("rb_k"), list(SUBJECTS)) == others_before
        assert (
            rows(database_url, "SELECT * FROM rb_k.segment_members WHERE user_id = %s", VICTIM)
            == []
        )
        assert rows(
            database_url,
            "SELECT traits::text, email, city FROM rb_k.projector_profiles WHERE user_id = %s",
            VICTIM,
        ) == [("{}", "", "")]
    finally:
        await ingest.stop(1)


def assert_no_personal_data(database_url: str, log: Any) -> None:
    """No table that held the victim's personal fields holds them any more."""
    profile = rows(
        database_url,
        "SELECT traits::text, time_traits::text, email, phone, push_token, consents::text,"
        " timezone, country, city, latitude, longitude, geo_country, geo_city, geo_latitude"
        " FROM projector_profiles WHERE user_id = ANY(%s)",
        list(SUBJECTS),
    )
    assert profile and all(
        row == ("{}", "{}", "", "", "", "{}", "", "", "", None, None, "", "", None)
        for row in profile
    ), profile
    states = rows(
        database_url, "SELECT state FROM projector_profiles WHERE user_id = ANY(%s)", list(SUBJECTS)
    )
    for (state,) in states:
        assert EMAIL.encode() not in bytes(state) and b"Berlin" not in bytes(state)
    facts = rows(
        database_url,
        "SELECT props::text FROM projector_facts WHERE user_id = ANY(%s)",
        list(SUBJECTS),
    )
    assert facts and {p for (p,) in facts} == {"{}"}
    keys = rows(
        database_url,
        "SELECT subject, key IS NULL, erased_at IS NOT NULL FROM cohortflow_user_keys"
        " WHERE app_id = 'app' AND owner = %s ORDER BY subject",
        VICTIM,
    )
    assert keys == [("anonymous:anon-u1", True, True), (VICTIM, True, True)]
    audit = rows(
        database_url,
        "SELECT user_id, requested_by, request_id, subjects FROM cohortflow_erasures",
    )
    assert audit == [(VICTIM, "dpo ticket 42", "r-1", ["anonymous:anon-u1", VICTIM])]
    # The log: the victim's events are all still there, their personal fields sealed, and
    # opened now they read as erased; nobody's plaintext holds the email.
    with psycopg.connect(database_url) as conn:
        raw = conn.execute("SELECT state FROM cohortflow_events").fetchall()
    assert not any(EMAIL.encode() in bytes(s) or b"Lyon" in bytes(s) for (s,) in raw)
    theirs = [
        e
        for e in stored_events(database_url)
        if isinstance(e, EventTracked | UserIdentified)
        and (e.user_id == VICTIM or e.anonymous_id == "anon-u1")
        and e.sealed
    ]
    assert len(theirs) >= 3 and {e.sealed for e in theirs} == {ERASED}
    assert not any(e.traits or e.contact for e in theirs if isinstance(e, UserIdentified))
    # Another user's identify is sealed in the log and opens with their key.
    (sealed,) = [e for e in sealed_events(database_url) if _identify_of(e, "u2")]
    (opened,) = [e for e in stored_events(database_url) if _identify_of(e, "u2")]
    assert sealed.sealed and not sealed.traits
    assert opened.traits and not opened.sealed


def _identify_of(event: object, user: str) -> bool:
    return isinstance(event, UserIdentified) and event.user_id == user
