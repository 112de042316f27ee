"""The event log on real PostgreSQL: once per id, positions, survives reopening."""

from __future__ import annotations

import threading

from services.eventlog.events import EventTracked, event_uuid
from services.eventlog.store import open_event_log
from tests.support.eventlog import stored_events, stored_rows


def tracked(app: str, event_id: str, user: str = "u1") -> EventTracked:
    return EventTracked(
        originator_id=event_uuid(app, "track", event_id),
        originator_version=1,
        app_id=app,
        event_id=event_id,
        user_id=user,
        anonymous_id="",
        name="Opened",
        event_time_us=1_790_000_000_000_000,
        received_time_us=1_790_000_000_000_001,
        properties={"n": 1.5, "tags": ["a", "b"]},
        time_properties={"at": 1_789_000_000_000_000},
        context={"country": "DE", "latitude": 52.5},
    )


def test_append_returns_positions_and_reports_duplicates(database_url: str) -> None:
    log = open_event_log(database_url)
    first = [log.encode(tracked("app", f"e{i}")) for i in range(3)]
    outcome = log.append_new(first)
    positions = [outcome.position(e.originator_id) for e in first]
    assert [dup for _, dup in positions] == [False, False, False]
    assert [p for p, _ in positions] == sorted(p for p, _ in positions)

    again = [log.encode(tracked("app", "e1")), log.encode(tracked("app", "e9"))]
    outcome2 = log.append_new(again)
    assert outcome2.position(again[0].originator_id) == (positions[1][0], True)
    assert outcome2.position(again[1].originator_id)[1] is False
    assert len(stored_rows(database_url)) == 4
    log.close()


def test_stored_events_decode_to_equal_events(database_url: str) -> None:
    log = open_event_log(database_url)
    original = tracked("app", "e1")
    log.append_new([log.encode(original)])
    log.close()
    (decoded,) = stored_events(database_url)
    assert decoded == original


def test_concurrent_writers_store_each_id_once(database_url: str) -> None:
    """Eight writers (own pools, like ingest replicas) race on overlapping ids."""
    ids = [f"e{i}" for i in range(200)]
    results: list[dict] = []
    errors: list[BaseException] = []

    def writer(offset: int) -> None:
        log = open_event_log(database_url, pool_size=1)
        try:
            mine = ids[offset * 10 : offset * 10 + 120]  # heavy overlap between writers
            stored = [log.encode(tracked("app", i)) for i in mine]
            outcome = log.append_new(stored)
            results.append({e.originator_id: outcome.position(e.originator_id)[0] for e in stored})
        except BaseException as error:  # surfaced below
            errors.append(error)
        finally:
            log.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    rows = stored_rows(database_url)
    distinct = {i for n in range(8) for i in ids[n * 10 : n * 10 + 120]}
    assert len(rows) == len(distinct)
    # Every writer was told the same position for the same id.
    agreed: dict = {}
    for result in results:
        for originator_id, position in result.items():
            assert agreed.setdefault(originator_id, position) == position
    stored_ids = {e.originator_id: e for e in stored_events(database_url)}
    assert set(agreed) == set(stored_ids)


def test_data_survives_reopening(database_url: str) -> None:
    log = open_event_log(database_url)
    log.append_new([log.encode(tracked("app", "keep"))])
    log.close()
    reopened = open_event_log(database_url)
    outcome = reopened.append_new([reopened.encode(tracked("app", "keep"))])
    assert outcome.position(event_uuid("app", "track", "keep"))[1] is True
    assert reopened.head_position() == stored_rows(database_url)[-1][0]
    reopened.close()
