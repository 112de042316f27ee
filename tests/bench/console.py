"""The console on real sizes: 1M users, 10M events (make bench BENCH_ARGS='--only console').

The history (facts and profiles) is the replay benchmark's, written set-based; on top of
it, set-based too: each user's lifecycle changes (consistent with their profile), RFM
changes of purchasers, three live segments with members and their entries. The rollups
are folded from those changes by the projector's own RollupFolder (timed), then the real
services and the console run as processes and every page is requested as a browser
would (signed in; median of RUNS requests on loopback) against the goal of 300 ms.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg

from services.common.jetstream import ChangeSubjects
from services.projector import rollup_schema, schema
from services.projector.adapters.rollups import RollupFolder
from services.projector.adapters.store import open_store
from tests.bench import replay
from tests.bench.report import Report, Row
from tests.support.console import ConsoleStack, csrf_of, signed_in
from tests.support.infra import NatsForTests

NAME = "console"
APP = replay.APP
GOAL_MS = 300.0
RUNS = 5
DAY = replay.DAY_US
NOW = replay.NOW_US

# Each user's lifecycle as changes: '' -> new at first sight, then on to their state.
LIFECYCLE_SQL = f"""
INSERT INTO {schema.CHANGES_TABLE} (app_id, user_id, sequence, change_id, kind, from_value,
  to_value, cause, effective_us, recorded_us, position)
SELECT '{APP}', user_id, seq, user_id || ':' || seq, 'lifecycle', from_value, to_value,
  CASE WHEN seq = 1 THEN 'event' ELSE 'time' END, at_us, at_us, 1
FROM (
  SELECT p.user_id, s.seq, s.from_value, s.to_value, least(s.at_us, {NOW}) AS at_us
  FROM {schema.PROFILES_TABLE} p
  CROSS JOIN LATERAL (VALUES
    (1, '', 'new', p.first_seen_us),
    (2, 'new', CASE p.lifecycle_state WHEN 'new' THEN NULL ELSE 'active' END,
        p.first_seen_us + 7 * {DAY}::bigint),
    (3, 'active', CASE p.lifecycle_state WHEN 'loyal' THEN 'loyal' WHEN 'dormant' THEN 'dormant'
        WHEN 'churned' THEN 'dormant' END, (extract(epoch FROM p.last_seen) * 1e6)::bigint
        + 7 * {DAY}::bigint),
    (4, 'dormant', CASE p.lifecycle_state WHEN 'churned' THEN 'churned' END,
        (extract(epoch FROM p.last_seen) * 1e6)::bigint + 30 * {DAY}::bigint)
  ) AS s(seq, from_value, to_value, at_us)
  WHERE p.app_id = '{APP}' AND p.lifecycle_state <> '' AND s.to_value IS NOT NULL
) c
"""
RFM_SQL = f"""
INSERT INTO {schema.CHANGES_TABLE} (app_id, user_id, sequence, change_id, kind, from_value,
  to_value, cause, effective_us, recorded_us, position)
SELECT '{APP}', user_id, 10, user_id || ':rfm', 'rfm', '', rfm_group, 'event',
  least((extract(epoch FROM last_seen) * 1e6)::bigint, {NOW}), {NOW}, 1
FROM {schema.PROFILES_TABLE} WHERE app_id = '{APP}' AND rfm_group <> ''
"""
SEGMENTS = {
    "engaged": ("lifecycle_state IN ('active', 'loyal')", {"lifecycle": ["active", "loyal"]}),
    "champions": ("rfm_group = 'champions'", {"rfm": ["champions"]}),
    "germany": ("country = 'DE'", {"geo": {"countries": ["DE"]}}),
}


def _segments(conn: psycopg.Connection) -> None:
    for n, (segment_id, (where, definition)) in enumerate(SEGMENTS.items()):
        conn.execute(
            f"INSERT INTO {schema.SEGMENTS_TABLE}"
            " VALUES (%s, %s, %s, '', 1, 1, 0, 'active', %s, %s)",
            (APP, segment_id, segment_id.title(), NOW, NOW),
        )
        conn.execute(
            f"INSERT INTO {schema.SEGMENT_VERSIONS_TABLE} (app_id, segment_id, version,"
            " display_name, description, definition, defined_position, defined_us, status,"
            " activated_position, activated_us)"
            " VALUES (%s, %s, 1, %s, '', %s, 1, %s, 'active', 1, %s)",
            (APP, segment_id, segment_id.title(), psycopg.types.json.Jsonb(definition), NOW, NOW),
        )
        since = "greatest(first_seen_us, %(now)s - 60 * %(day)s::bigint)"
        conn.execute(
            f"INSERT INTO {schema.SEGMENT_MEMBERS_TABLE}"
            f" SELECT app_id, %(sid)s, user_id, 1, {since} FROM {schema.PROFILES_TABLE}"
            f" WHERE app_id = %(app)s AND {where}",
            {"sid": segment_id, "app": APP, "now": NOW, "day": DAY},
        )
        conn.execute(
            f"INSERT INTO {schema.CHANGES_TABLE} (app_id, user_id, sequence, change_id, kind,"
            " from_value, to_value, cause, effective_us, recorded_us, position, details)"
            " SELECT app_id, user_id, 20 + %(n)s, user_id || ':' || segment_id, 'membership', '',"
            " 'entered', 'redefinition', since_us, since_us, 1,"
            " jsonb_build_object('segment_id', segment_id, 'segment_version', 1)"
            f" FROM {schema.SEGMENT_MEMBERS_TABLE} WHERE app_id = %(app)s AND segment_id = %(sid)s",
            {"n": n, "app": APP, "sid": segment_id},
        )


def _changes(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET work_mem = '512MB'")
        conn.execute(LIFECYCLE_SQL)
        conn.execute(RFM_SQL)
        _segments(conn)
        conn.execute(f"VACUUM ANALYZE {schema.CHANGES_TABLE}")
        conn.execute(f"VACUUM ANALYZE {schema.SEGMENT_MEMBERS_TABLE}")
        row = conn.execute(f"SELECT count(*) FROM {schema.CHANGES_TABLE}").fetchone()
        return int(row[0]) if row else 0


def _timed(client: httpx.Client, method: str, path: str, **kwargs: object) -> tuple[float, int]:
    times, status = [], 0
    for _ in range(RUNS):
        started = time.perf_counter()
        reply = client.request(method, path, **kwargs)  # type: ignore[arg-type]
        times.append((time.perf_counter() - started) * 1000)
        status = reply.status_code
        assert status < 400, (path, status, reply.text[:500])
    return statistics.median(times), status


def run(report: Report, database_url: str, workdir: Path, heavy: bool = False) -> None:
    events, users = (20_000_000, 2_000_000) if heavy else (10_000_000, 1_000_000)
    run_sized(report, database_url, workdir, events, users)


def run_sized(report: Report, database_url: str, workdir: Path, events: int, users: int) -> None:
    print(f"[{NAME}] writing {events:,} facts of {users:,} users...", flush=True)
    started = time.perf_counter()
    replay._generate(database_url, events, users)
    changes = _changes(database_url)
    generate_s = time.perf_counter() - started
    store = open_store(database_url, ChangeSubjects("bench.console"), pool_size=2)
    started = time.perf_counter()
    folded = RollupFolder(store, batch=200_000).fold_all()
    fold_s = time.perf_counter() - started
    store.datastore.close()
    with psycopg.connect(database_url, autocommit=True) as conn:
        for table in rollup_schema.TABLES:  # what autovacuum does after such a load
            conn.execute(f"VACUUM ANALYZE {table}")
    report.add(
        Row(
            NAME,
            "data and rollups",
            {
                "events": events,
                "users": users,
                "changes": changes,
                "generate s": generate_s,
                "fold s": fold_s,
                "changes/s folded": folded / fold_s,
            },
            "changes set-based from the profiles; RollupFolder (the projector's job) folds them",
        )
    )
    nats = NatsForTests(workdir / "nats")
    stack = ConsoleStack(database_url, nats.url, workdir, apps=(APP, "bench-other"))
    try:
        stack.start()
        _pages(report, stack)
        _rpcs(report, stack)
    finally:
        stack.close()
        nats.close()


def _pages(report: Report, stack: ConsoleStack) -> None:
    client = signed_in(stack, "ana")
    token = csrf_of(client, f"/apps/{APP}/segments")
    headers = {"x-csrf-token": token}
    end = datetime.fromtimestamp(NOW / 1e6, UTC).date()
    a = f"/apps/{APP}"
    created = client.post(
        f"{a}/campaigns/new",
        data={
            "csrf_token": token,
            "request_id": "bench-1",
            "form": "name: Bench\ntrigger: {segment: {segment_id: engaged, direction: entered}}\n"
            "channel: in_app\nvariants: [{name: A, template: {title: Hi, body: There}}]\n"
            "control_percent: 10\n",
        },
    )
    assert created.status_code == 303, created.text[-500:]
    campaign = created.headers["location"]
    draft = {
        "segment_id": "engaged",
        "condition": {
            "all": [
                {"lifecycle": ["active", "loyal"]},
                {"events": {"name": "Order Completed", "op": ">=", "value": 1, "window": "30d"}},
            ]
        },
    }
    pages = [
        (
            "overview (series 90 d, flows 7 d)",
            "GET",
            f"{a}/?end={end}&flow_to={end}&rfm_to={end}",
            {},
        ),
        (
            "overview (flows of 14 d ending 10 d ago: from the per-day rows)",
            "GET",
            f"{a}/?end={end}&flow_from={end - timedelta(days=24)}"
            f"&flow_to={end - timedelta(days=10)}&rfm_to={end}",
            {},
        ),
        (
            "overview (series 365 d, flows 90 d)",
            "GET",
            f"{a}/?start={end - timedelta(days=365)}&end={end}&flow_from={end - timedelta(days=90)}"
            f"&flow_to={end}&rfm_from={end - timedelta(days=90)}&rfm_to={end}",
            {},
        ),
        ("segments list (sizes, sparklines)", "GET", f"{a}/segments", {}),
        ("segment: versions, members now, size chart", "GET", f"{a}/segments/engaged", {}),
        (
            "segment: members as of a date + why one user",
            "GET",
            f"{a}/segments/engaged?as_of={end - timedelta(days=20)}&user=u1",
            {},
        ),
        ("builder page", "GET", f"{a}/segments/engaged/edit", {}),
        (
            "builder: check as you type",
            "POST",
            f"{a}/api/segments/validate",
            {"json": draft, "headers": headers},
        ),
        ("user search -> profile", "GET", f"{a}/users?q=u1", {"follow_redirects": True}),
        ("user: profile, timeline, messages", "GET", f"{a}/users/u1", {}),
        ("campaigns list", "GET", f"{a}/campaigns", {}),
        ("campaign: stats, uplift, deliveries", "GET", f"{campaign}?user=u1", {}),
        ("live page", "GET", f"{a}/live", {}),
    ]
    for label, method, path, kwargs in pages:
        ms, _ = _timed(client, method, path, **kwargs)
        met = "met" if ms < GOAL_MS else "NOT met"
        report.add(Row(NAME, label, {"median ms": ms, "goal ms": GOAL_MS}, met))
    ms, _ = _timed(client, "POST", f"{a}/api/segments/preview", json=draft, headers=headers)
    report.add(
        Row(
            NAME,
            "builder: exact preview (PreviewSegment)",
            {"median ms": ms, "goal ms": GOAL_MS},
            "full-history computation: the replay benchmark's figure, not a page",
        )
    )


def _rpcs(report: Report, stack: ConsoleStack) -> None:
    """The gRPC calls behind the slowest pages, one by one (median of RUNS)."""
    import grpc
    from cohortflow.analytics.v1 import analytics_pb2 as apb
    from cohortflow.analytics.v1 import analytics_pb2_grpc
    from cohortflow.profiles.v1 import profiles_pb2, profiles_pb2_grpc
    from cohortflow.segments.v1 import segments_pb2 as spb
    from cohortflow.segments.v1 import segments_pb2_grpc
    from google.protobuf.timestamp_pb2 import Timestamp

    def ts(day: int, end_of_day: bool = False) -> Timestamp:
        out = Timestamp()
        out.FromMicroseconds(day * DAY + (DAY - 1 if end_of_day else 0))
        return out

    end = NOW // DAY
    metadata = [("authorization", f"Bearer key-{APP}")]
    with grpc.insecure_channel(stack.pipeline.projector_address) as channel:
        profiles = profiles_pb2_grpc.ProfileServiceStub(channel)
        analytics = analytics_pb2_grpc.AnalyticsServiceStub(channel)
        segments = segments_pb2_grpc.SegmentServiceStub(channel)
        calls = [
            (
                "GetLifecycleSummary (now)",
                profiles.GetLifecycleSummary,
                profiles_pb2.GetLifecycleSummaryRequest(),
            ),
            (
                "GetLifecycleSeries (90 d)",
                analytics.GetLifecycleSeries,
                apb.GetLifecycleSeriesRequest(start_time=ts(end - 89), end_time=ts(end)),
            ),
            (
                "GetLifecycleFlows (30 d)",
                analytics.GetLifecycleFlows,
                apb.GetLifecycleFlowsRequest(start_time=ts(end - 30), end_time=ts(end)),
            ),
            (
                "GetLifecycleFlows (14 d ending 10 d ago: from the per-day rows)",
                analytics.GetLifecycleFlows,
                apb.GetLifecycleFlowsRequest(start_time=ts(end - 24), end_time=ts(end - 10)),
            ),
            (
                "GetLifecycleFlows (7 d)",
                analytics.GetLifecycleFlows,
                apb.GetLifecycleFlowsRequest(start_time=ts(end - 7), end_time=ts(end)),
            ),
            ("GetRfmGrid", analytics.GetRfmGrid, apb.GetRfmGridRequest()),
            (
                "GetRfmTransitions (30 d)",
                analytics.GetRfmTransitions,
                apb.GetRfmTransitionsRequest(start_time=ts(end - 29), end_time=ts(end)),
            ),
            (
                "GetSegmentSizeSeries (3 segments, 30 d)",
                analytics.GetSegmentSizeSeries,
                apb.GetSegmentSizeSeriesRequest(
                    segment_ids=list(SEGMENTS), start_time=ts(end - 29), end_time=ts(end)
                ),
            ),
            ("GetSegment", segments.GetSegment, spb.GetSegmentRequest(segment_id="engaged")),
            ("ListSegments", segments.ListSegments, spb.ListSegmentsRequest()),
            (
                "ListSegmentMembers (now, 50)",
                segments.ListSegmentMembers,
                spb.ListSegmentMembersRequest(segment_id="engaged", page_size=50),
            ),
            (
                "ListSegmentMembers (as of a day's end, 50)",
                segments.ListSegmentMembers,
                spb.ListSegmentMembersRequest(
                    segment_id="engaged", page_size=50, as_of_time=ts(end - 20, end_of_day=True)
                ),
            ),
            (
                "ListSegmentMembers (as of another time, 50: counts the changes)",
                segments.ListSegmentMembers,
                spb.ListSegmentMembersRequest(
                    segment_id="engaged", page_size=50, as_of_time=ts(end - 20)
                ),
            ),
        ]
        for label, method, request in calls:
            times = []
            for _ in range(RUNS):
                started = time.perf_counter()
                method(request, metadata=metadata, timeout=120)
                times.append((time.perf_counter() - started) * 1000)
            ms = statistics.median(times)
            report.add(
                Row(
                    NAME,
                    "rpc " + label,
                    {"median ms": ms, "goal ms": GOAL_MS},
                    "met" if ms < GOAL_MS else "NOT met",
                )
            )
