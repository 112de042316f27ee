"""Sealing personal fields with a user's key: round trip, erasure, old events, the format."""

from __future__ import annotations

import uuid

import pytest
from cryptography.exceptions import InvalidTag

from services.eventlog.events import EventTracked, UserIdentified, event_uuid
from services.eventlog.sealing import (
    ERASED,
    key_id_of,
    new_key,
    open_state,
    seal,
    seal_state,
    sealed_key_ids,
    subject_of,
    unseal,
    unseal_all,
)
from services.eventlog.store import EventLog

KEY_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")


def tracked(**fields: object) -> EventTracked:
    base: dict[str, object] = {
        "originator_id": event_uuid("app", "track", "e1"),
        "originator_version": 1,
        "app_id": "app",
        "event_id": "e1",
        "user_id": "u1",
        "anonymous_id": "a1",
        "name": "Order Completed",
        "event_time_us": 1_000,
        "received_time_us": 2_000,
        "properties": {"revenue": 12.5, "sku": "shoe", "note": "gift for Ann"},
        "time_properties": {"due": 5},
        "context": {"city": "Lyon", "latitude": 45.7},
    }
    return EventTracked(**(base | fields))  # type: ignore[arg-type]


def identified() -> UserIdentified:
    return UserIdentified(
        originator_id=event_uuid("app", "identify", "i1"),
        originator_version=1,
        app_id="app",
        event_id="i1",
        user_id="u1",
        anonymous_id="a1",
        event_time_us=1_000,
        received_time_us=2_000,
        traits={"name": "Ann"},
        contact={"email": "ann@example.com"},
        consents={"email": True},
        timezone="Europe/Paris",
        location={"country": "FR"},
    )


def test_a_tracked_event_keeps_ids_name_times_and_the_amount_clear() -> None:
    key = new_key()
    event = tracked()
    sealed = seal(event, KEY_ID, key)
    assert isinstance(sealed, EventTracked)
    assert sealed.properties == {"revenue": 12.5}
    assert sealed.time_properties == {} and sealed.context == {}
    assert (sealed.user_id, sealed.name, sealed.event_time_us) == ("u1", "Order Completed", 1_000)
    assert "Lyon" not in sealed.sealed and "gift" not in sealed.sealed
    assert key_id_of(sealed) == KEY_ID
    assert unseal(sealed, key) == event


def test_an_identify_seals_traits_contact_consents_timezone_and_location() -> None:
    key = new_key()
    event = identified()
    sealed = seal(event, KEY_ID, key)
    assert isinstance(sealed, UserIdentified)
    assert (sealed.traits, sealed.contact, sealed.consents) == ({}, {}, {})
    assert (sealed.timezone, sealed.location) == ("", {})
    assert unseal(sealed, key) == event


def test_a_destroyed_key_reads_as_erased_never_as_an_error() -> None:
    sealed = seal(tracked(), KEY_ID, new_key())
    erased = unseal(sealed, None)
    assert erased.sealed == ERASED
    assert erased.properties == {"revenue": 12.5}
    assert erased.context == {} and erased.time_properties == {}
    assert key_id_of(erased) is None


def test_a_sealed_blob_opens_only_on_its_own_event_with_its_own_key() -> None:
    key = new_key()
    sealed = seal(tracked(), KEY_ID, key)
    with pytest.raises(InvalidTag):
        unseal(sealed, new_key())
    moved = tracked(originator_id=event_uuid("app", "track", "e2"), sealed=sealed.sealed)
    with pytest.raises(InvalidTag):
        unseal(moved, key)


def test_an_event_with_nothing_personal_is_stored_as_it_is() -> None:
    bare = tracked(properties={"revenue": 3.0}, time_properties={}, context={})
    assert seal(bare, KEY_ID, new_key()) is bare


def test_the_subject_is_the_user_else_the_anonymous_id() -> None:
    assert subject_of(tracked()) == "u1"
    assert subject_of(tracked(user_id="")) == "anonymous:a1"


def test_stored_and_read_back_through_the_log_transcoder_old_events_included() -> None:
    """The stored form round-trips, the key ids are found in the raw JSON, and an event
    stored before sealing (no `sealed` field at all) decodes and unseals as it was."""
    log = EventLog(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    key = new_key()
    stored = log.encode(seal(tracked(), KEY_ID, key))
    assert sealed_key_ids([stored.state]) == {KEY_ID}
    decoded = log.mapper.to_domain_event(stored)
    assert unseal_all([decoded], _Keys({KEY_ID: key})) == [tracked()]
    old = log.encode(tracked())
    old_state = old.state.replace(b',"sealed":""', b"")
    assert b"sealed" not in old_state
    legacy = log.mapper.to_domain_event(
        type(old)(old.originator_id, old.originator_version, old.topic, old_state)
    )
    assert unseal_all([legacy], _Keys({})) == [tracked()]


class _Keys:
    def __init__(self, keys: dict[uuid.UUID, bytes]) -> None:
        self._keys = keys

    def keys(self, key_ids: object) -> dict[uuid.UUID, bytes | None]:
        return {k: self._keys.get(k) for k in key_ids}  # type: ignore[attr-defined]


def test_a_handed_over_state_keeps_its_counts_clear_and_its_personal_part_sealed() -> None:
    key, aad = new_key(), b"event-id"
    state = {"event_count": 3, "traits": {"plan": "pro"}, "place": {"city": "Lyon"}}
    rest, sealed = seal_state(state, KEY_ID, key, aad)
    assert rest == {"event_count": 3} and "Lyon" not in sealed
    assert open_state(rest, sealed, key, aad) == state
    assert open_state(rest, sealed, None, aad) == {"event_count": 3}  # erased
    assert seal_state({"event_count": 1}, KEY_ID, key, aad) == ({"event_count": 1}, "")
