"""Erasure with P=4: the user's anonymous history lived in another partition and was handed
over; erasing the user reaches both partitions, and nothing personal stays in the log or
the read models of either."""

from __future__ import annotations

from typing import Any

import psycopg

from services.eventlog.keyring import Keyring
from services.eventlog.partitioned import PartitionedLog
from services.eventlog.partitions import partition_of
from services.ingest.erasures import Erasures
from services.ingest.sealer import Sealer
from tests.integration.partitions.conftest import P
from tests.integration.partitions.test_identity_across_partitions import SEGMENTS, _until
from tests.support.partitioned import apart, route, story, wait_folded, wait_live
from tests.support.projector import in_process_projector
from tests.support.segment_history import save_segments


async def test_erasure_reaches_the_partitions_of_the_user_and_their_anonymous_id(
    partitioned: tuple[str, PartitionedLog], nats_server: Any
) -> None:
    url, log = partitioned
    user, device = "ada", apart("ada", P)
    keyring = Keyring(log.home.log_recorder.datastore)
    save_segments(log.home, SEGMENTS)
    events = Sealer(keyring).seal_all(story(user, device))
    async with in_process_projector(url, nats_server.url):
        await wait_live(log, len(SEGMENTS))
        route(log, events, {})
        await wait_folded(log)
        await _until(
            lambda: (
                _row(url, "SELECT count(*) FROM segment_members WHERE user_id = %s", user)[0] > 0
            )
        )
        erased = Erasures(keyring, log).erase("app", user, "dpo", "r-1")
        assert erased.anonymous_ids == [device]
        await wait_folded(log)
        await _until(
            lambda: (
                _row(url, "SELECT count(*) FROM segment_members WHERE user_id = %s", user)[0] == 0
            )
        )
        await wait_folded(log)
    # UserErased went to the user's partition and to the anonymous id's.
    homes = {partition_of("app", user, P), partition_of("app", f"anonymous:{device}", P)}
    assert len(homes) == 2
    for partition in range(P):
        count = _row(
            url,
            f"SELECT count(*) FROM {log.deployment.log_name(partition)}_events WHERE topic LIKE %s",
            "%:UserErased",
        )[0]
        assert count == (1 if partition in homes else 0), partition
    exits = _row(
        url,
        "SELECT count(*) FROM projector_changes WHERE user_id = %s AND cause = 'erasure'",
        user,
    )[0]
    assert exits >= 1
    assert _row(
        url,
        "SELECT traits::text, city, geo_city FROM projector_profiles WHERE user_id = %s",
        user,
    ) == ("{}", "", "")
    facts = _row(
        url,
        "SELECT count(*) FROM projector_facts WHERE user_id = ANY(%s) AND props <> '{}'",
        [user, f"anonymous:{device}"],
    )
    assert facts == (0,)
    # No partition's log holds the anonymous history's place in clear (the hand-over of
    # the anonymous state included).
    for partition in range(P):
        leaked = _row(
            url,
            f"SELECT count(*) FROM {log.deployment.log_name(partition)}_events"
            " WHERE position('Berlin' in convert_from(state, 'UTF8')) > 0"
            # (the segment "from-berlin" names the city: a definition, nobody's data)
            " AND topic NOT LIKE '%%Segment%%' AND topic NOT LIKE '%%AppWideFactRelayed'",
        )
        assert leaked == (0,), (partition, leaked)


def _row(url: str, query: str, *params: Any) -> tuple[Any, ...]:
    with psycopg.connect(url) as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None
    return tuple(row)
