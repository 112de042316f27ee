"""Replay over a large history: preview and rebuild rates, DuckDB as the anchor.

The goal (make bench, "replay"): a preview and a version rebuild over the full
history run at 200k events/s or more, and within 5x of DuckDB computing the
same membership from the same events.

1. History: `events` facts of `users` users over 90 days are written straight
   into `projector_facts` by one server-side INSERT ... SELECT (App Opened,
   Viewed Product and Added to Cart with a category, ~5% Order Completed with a
   revenue, Searched; activity skewed per user, a third of the users stopping
   at some point), in time order as the projector appends them, then one
   profile per user derived from those facts (lifecycle, RFM group, country),
   the clock and the tracking position, then VACUUM ANALYZE. Revenues are
   multiples of 0.25, so sums are exact in any order and both engines agree to
   the last bit on `sum > 100`.
2. Per definition: the preview query (`members_query`, every member's id to the
   client; median of 3 runs) and the rebuild (`SegmentBuilder.build`, once:
   tracker states from the facts, stored rows, Segment.Built appended: what a
   redefinition runs).
3. Anchor, same run: the same facts and profiles exported as CSV and loaded
   into DuckDB (2 threads), one hand-written SQL per definition (median of 3
   runs). Its member set must equal PostgreSQL's, or the benchmark fails.

Sizes: 10M events of 1M users (about 4 minutes on 2 cores, most of it writing
the history); --heavy: 20M of 2M.

Rates are events of the whole history per second of the query (the events a
definition actually reads are shown beside). Generation, export and load are
reported separately and are not part of any rate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import psycopg

from services.common.jetstream import ChangeSubjects
from services.common.segments.definition import parse
from services.eventlog.store import LOG_NAME, open_event_log
from services.projector import schema
from services.projector.adapters.builds import SegmentBuilder
from services.projector.adapters.history import tune
from services.projector.adapters.preview import members_query
from services.projector.adapters.store import open_store
from services.projector.domain.changeset import TICK_FACT
from tests.bench.history import CATEGORIES, COUNTRIES, write
from tests.bench.report import Report, Row, median
from tests.support.segments import Definitions

NAME = "replay"
APP = "app"
DAY_US = 86_400_000_000
NOW_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z, the recorded clock of the history
SPAN_DAYS = 90
GOAL_RATE = 200_000
GOAL_RATIO = 5.0
RUNS = 3  # queries: the median of this many runs (a build runs once)


@dataclass(frozen=True)
class Case:
    segment_id: str
    definition: dict[str, Any]
    duckdb: str  # members as DuckDB SQL; {through} and {now} are filled in


def _ago(days: float) -> str:
    """DuckDB SQL for the clock minus `days` (in microseconds)."""
    return f"{{now}} - {int(days * DAY_US)}"


CASES = [
    Case(
        "carts-shoes-30d",
        {
            "events": {
                "name": "Added to Cart",
                "window": "30d",
                "aggregate": "count",
                "op": ">=",
                "value": 3,
                "where": [{"property": "category", "op": "=", "value": "shoes"}],
            }
        },
        f"""
        SELECT user_id FROM profiles WHERE app_id = 'app' AND user_id IN (
            SELECT user_id FROM facts
            WHERE app_id = 'app' AND name = 'Added to Cart' AND position <= {{through}}
              AND event_time_us > {_ago(30)} AND props->>'category' = 'shoes'
            GROUP BY user_id HAVING count(*) >= 3)
        """,
    ),
    Case(
        "spend-30d",
        {
            "events": {
                "name": "Order Completed",
                "window": "30d",
                "aggregate": "sum",
                "property": "revenue",
                "op": ">",
                "value": 100,
            }
        },
        f"""
        SELECT user_id FROM profiles WHERE app_id = 'app' AND user_id IN (
            SELECT user_id FROM facts
            WHERE app_id = 'app' AND name = 'Order Completed' AND position <= {{through}}
              AND event_time_us > {_ago(30)}
            GROUP BY user_id HAVING sum(CAST(props->>'revenue' AS DOUBLE)) > 100)
        """,
    ),
    Case(
        "cart-abandoners-24h",
        {"inaction": {"did": "Added to Cart", "not_did": "Order Completed", "within": "24h"}},
        f"""
        SELECT user_id FROM profiles JOIN (
            SELECT user_id,
                   max(event_time_us) FILTER (WHERE name = 'Added to Cart') AS carted,
                   max(event_time_us) FILTER (WHERE name = 'Order Completed') AS ordered
            FROM facts
            WHERE app_id = 'app' AND name IN ('Added to Cart', 'Order Completed')
              AND position <= {{through}}
            GROUP BY user_id) USING (user_id)
        WHERE app_id = 'app' AND carted IS NOT NULL AND (ordered IS NULL OR ordered < carted)
          AND carted <= {_ago(1)}
        """,
    ),
    Case(
        "lapsed-7d",
        {"recency": {"name": "App Opened", "more_than": "7d"}},
        f"""
        SELECT user_id FROM profiles WHERE app_id = 'app' AND user_id IN (
            SELECT user_id FROM facts
            WHERE app_id = 'app' AND name = 'App Opened' AND position <= {{through}}
            GROUP BY user_id HAVING max(event_time_us) <= {_ago(7)})
        """,
    ),
    Case(
        "browsing-not-buying",
        {
            "all": [
                {"lifecycle": ["active", "loyal"]},
                {"events": {"name": "Viewed Product", "window": "7d", "op": ">=", "value": 2}},
                {
                    "none": [
                        {
                            "events": {
                                "name": "Order Completed",
                                "window": "30d",
                                "op": ">=",
                                "value": 1,
                            }
                        }
                    ]
                },
            ]
        },
        f"""
        SELECT user_id FROM profiles
        WHERE app_id = 'app' AND lifecycle_state IN ('active', 'loyal')
          AND user_id IN (
            SELECT user_id FROM facts
            WHERE app_id = 'app' AND name = 'Viewed Product' AND position <= {{through}}
              AND event_time_us > {_ago(7)}
            GROUP BY user_id HAVING count(*) >= 2)
          AND user_id NOT IN (
            SELECT user_id FROM facts
            WHERE app_id = 'app' AND name = 'Order Completed' AND position <= {{through}}
              AND event_time_us > {_ago(30)})
        """,
    ),
]


def _text_array(values: tuple[str, ...]) -> str:
    return "ARRAY[" + ", ".join(f"'{v}'" for v in values) + "]"


# One row per event: a user skewed towards low ids (power users), a time in the
# last 90 days (a third of the users stopped up to 54 days ago), a name by the
# mix below and its properties. Sorted by time, numbered as log positions.
FACTS_SQL = f"""
INSERT INTO {schema.FACTS_TABLE} (app_id, user_id, name, event_time_us, position, props)
SELECT '{APP}', 'u' || u, name, t, row_number() OVER (ORDER BY t), props FROM (
  SELECT u,
    {NOW_US} - ((stop + (1 - stop) * rt) * {SPAN_DAYS * DAY_US})::bigint AS t,
    CASE WHEN k < 0.30 THEN 'App Opened' WHEN k < 0.60 THEN 'Viewed Product'
      WHEN k < 0.75 THEN 'Added to Cart' WHEN k < 0.80 THEN 'Order Completed'
      ELSE 'Searched' END AS name,
    CASE WHEN k < 0.30 THEN jsonb_build_object('$context',
        jsonb_build_object('country', ({_text_array(COUNTRIES)})[1 + mod(u, {len(COUNTRIES)})]))
      WHEN k < 0.75 THEN jsonb_build_object('category',
        ({_text_array(CATEGORIES)})[1 + floor(c * {len(CATEGORIES)})::int])
      WHEN k < 0.80 THEN jsonb_build_object('revenue',
        round(4 * exp(3 + sqrt(-2 * ln(1 - r1)) * cos(2 * pi() * r2))) / 4)
      ELSE jsonb_build_object('query', 'q' || floor(c * 1000)::int) END AS props
  FROM (
    SELECT u, random() AS k, random() AS c, random() AS rt, random() AS r1, random() AS r2,
      CASE WHEN mod(u, 3) = 0 THEN mod(u::bigint * 7919, 1000) / 1000.0 * 0.6 ELSE 0 END AS stop
    FROM (SELECT floor(%(users)s * power(random(), 2))::int AS u
          FROM generate_series(1, %(events)s)) g
  ) a
) b ORDER BY t
"""

# One profile per user (also those without events), derived from their facts.
PROFILES_SQL = f"""
INSERT INTO {schema.PROFILES_TABLE} (app_id, user_id, country, geo_country, first_seen_us,
  first_seen, last_seen, event_count, lifecycle_state, rfm_group)
SELECT '{APP}', 'u' || g, country, country, f.first_us, to_timestamp(f.first_us / 1e6),
  to_timestamp(f.last_us / 1e6), coalesce(f.n, 0),
  CASE WHEN f.n IS NULL THEN ''
    WHEN {NOW_US} - f.last_us > 30 * {DAY_US}::bigint THEN 'churned'
    WHEN {NOW_US} - f.last_us > 7 * {DAY_US}::bigint THEN 'dormant'
    WHEN {NOW_US} - f.first_us < 7 * {DAY_US}::bigint THEN 'new'
    WHEN f.n >= 40 THEN 'loyal' ELSE 'active' END,
  CASE WHEN coalesce(f.orders, 0) = 0 THEN ''
    WHEN f.orders >= 3 AND {NOW_US} - f.last_order < 14 * {DAY_US}::bigint THEN 'champions'
    WHEN f.orders >= 2 THEN 'loyal'
    WHEN {NOW_US} - f.last_order > 45 * {DAY_US}::bigint THEN 'at_risk'
    ELSE 'promising' END
FROM generate_series(0, %(users)s - 1) g
CROSS JOIN LATERAL (SELECT ({_text_array(COUNTRIES)})[1 + mod(g, {len(COUNTRIES)})] AS country) c
LEFT JOIN (
  SELECT user_id, count(*) AS n, min(event_time_us) AS first_us, max(event_time_us) AS last_us,
    count(*) FILTER (WHERE name = 'Order Completed') AS orders,
    max(event_time_us) FILTER (WHERE name = 'Order Completed') AS last_order
  FROM {schema.FACTS_TABLE} WHERE app_id = '{APP}' GROUP BY user_id
) f ON f.user_id = 'u' || g
"""

FACT_INDEXES = [s for s in schema.STATEMENTS if "INDEX" in s and f"ON {schema.FACTS_TABLE}" in s]


def _generate(url: str, events: int, users: int) -> int:
    """Writes the history, profiles, clock and position; returns the head position."""
    with psycopg.connect(url, autocommit=True) as conn:
        # Bulk-load settings for this session only; the queries measured use the defaults.
        conn.execute("SET work_mem = '1GB'")
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SELECT setseed(0.42)")
        for name in ("name", "user"):  # built again below, after the load (faster)
            conn.execute(f"DROP INDEX {schema.FACTS_TABLE}_{name}")
        conn.execute(FACTS_SQL, {"events": events, "users": users})
        head = events + 1
        conn.execute(
            f"INSERT INTO {schema.FACTS_TABLE} VALUES ('', '', %s, %s, %s, '{{}}')",
            (TICK_FACT, NOW_US, head),
        )
        for statement in FACT_INDEXES:
            conn.execute(statement)
        conn.execute(PROFILES_SQL, {"users": users})
        conn.execute(
            f"INSERT INTO {schema.META_TABLE} (name, value) VALUES ('now_us', %s)", (NOW_US,)
        )
        conn.execute(f"INSERT INTO {schema.TRACKING_TABLE} VALUES (%s, %s)", (LOG_NAME, head))
        conn.execute(f"VACUUM ANALYZE {schema.FACTS_TABLE}")
        conn.execute(f"VACUUM ANALYZE {schema.PROFILES_TABLE}")
    return head


def _export(url: str, workdir: Path) -> dict[str, Path]:
    """The facts and profiles as CSV files, as they are in PostgreSQL."""
    tables = {
        "facts": f"SELECT app_id, user_id, name, event_time_us, position, props"
        f" FROM {schema.FACTS_TABLE}",
        "profiles": f"SELECT app_id, user_id, lifecycle_state, rfm_group, geo_country"
        f" FROM {schema.PROFILES_TABLE}",
    }
    paths = {}
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        for table, query in tables.items():
            paths[table] = path = workdir / f"replay-{table}.csv"
            with path.open("wb") as f, cur.copy(f"COPY ({query}) TO STDOUT (FORMAT csv)") as copy:
                for data in copy:
                    f.write(data)
    return paths


def _load_duckdb(paths: dict[str, Path]) -> duckdb.DuckDBPyConnection:
    db = duckdb.connect(config={"threads": 2})
    columns = {
        "facts": "{'app_id': 'VARCHAR', 'user_id': 'VARCHAR', 'name': 'VARCHAR',"
        " 'event_time_us': 'BIGINT', 'position': 'BIGINT', 'props': 'JSON'}",
        "profiles": "{'app_id': 'VARCHAR', 'user_id': 'VARCHAR', 'lifecycle_state': 'VARCHAR',"
        " 'rfm_group': 'VARCHAR', 'geo_country': 'VARCHAR'}",
    }
    for table, path in paths.items():
        db.execute(
            f"CREATE TABLE {table} AS SELECT * FROM read_csv('{path}', header = false,"
            f" columns = {columns[table]})"
        )
    return db


def _timed(fn: Any, *args: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - started, result


def _median_timed(runs: int, fn: Any, *args: Any) -> tuple[float, Any]:
    """The median seconds of `runs` calls (machines here are shared), and the last result."""
    times, result = [], None
    for _ in range(runs):
        seconds, result = _timed(fn, *args)
        times.append(seconds)
    return median(times), result


def _fetch(connection: Any, query: Any) -> list[Any]:
    """Every row, to the client (both engines: a cursor of psycopg or DuckDB)."""
    return list(connection.execute(query).fetchall())


def _preview(conn: psycopg.Connection, query: Any) -> list[Any]:
    """Every member, as a preview runs its query: in one transaction, tuned by `tune`."""
    with conn.transaction(), conn.cursor() as cursor:
        tune(cursor)
        return list(cursor.execute(query).fetchall())


def _read_events(conn: psycopg.Connection, case: Case, through: int) -> int:
    """Facts of the names a definition reads (what its queries scan, windows aside)."""
    names = sorted(set(_names(case.definition)))
    row = conn.execute(
        f"SELECT count(*) FROM {schema.FACTS_TABLE}"
        " WHERE app_id = %s AND name = ANY(%s) AND position <= %s",
        (APP, names, through),
    ).fetchone()
    return int(row[0]) if row else 0


def _names(node: Any) -> list[str]:
    if isinstance(node, dict):
        out = [node[k] for k in ("name", "did", "not_did") if isinstance(node.get(k), str)]
        return out + [n for v in node.values() for n in _names(v)]
    if isinstance(node, list):
        return [n for v in node for n in _names(v)]
    return []


def _compare(case: Case, pg: set[str], dd: set[str]) -> None:
    if pg != dd:
        only_pg, only_dd = sorted(pg - dd)[:5], sorted(dd - pg)[:5]
        msg = (
            f"{case.segment_id}: PostgreSQL has {len(pg)} members, DuckDB {len(dd)};"
            f" only in PostgreSQL e.g. {only_pg}, only in DuckDB e.g. {only_dd}"
        )
        raise AssertionError(msg)


def run(report: Report, database_url: str, workdir: Path, heavy: bool = False) -> None:
    events, users = (20_000_000, 2_000_000) if heavy else (10_000_000, 1_000_000)
    run_sized(report, database_url, workdir, events, users)


def run_sized(report: Report, url: str, workdir: Path, events: int, users: int) -> None:
    wall = time.perf_counter()
    print(f"[{NAME}] writing {events:,} facts of {users:,} users...", flush=True)
    gen_s, head = _timed(_generate, url, events, users)
    export_s, paths = _timed(_export, url, workdir)
    load_s, db = _timed(_load_duckdb, paths)
    csv_mb = sum(p.stat().st_size for p in paths.values()) / 1e6
    with psycopg.connect(url) as conn:
        size = conn.execute(
            "SELECT pg_total_relation_size(%s) / 1e6", (schema.FACTS_TABLE,)
        ).fetchone()
    report.add(
        Row(
            f"{NAME}: history",
            f"{events:,} events",
            {
                "events": events,
                "users": users,
                "generate s": gen_s,
                "facts MB": float(size[0]) if size else 0.0,
                "export s": export_s,
                "CSV MB": csv_mb,
                "duckdb load s": load_s,
            },
            "PostgreSQL: INSERT...SELECT, indexes, profiles, VACUUM ANALYZE; DuckDB: CSV load",
        )
    )

    log = open_event_log(url, pool_size=1)
    store = open_store(url, ChangeSubjects("bench.changes"), pool_size=2)
    builder = SegmentBuilder(store, log, lambda: head)
    definitions = Definitions(APP)
    totals = {"pg": 0.0, "duckdb": 0.0, "rebuild": 0.0}
    slowest = {"pg": float("inf"), "rebuild": float("inf")}
    worst_ratio = {"pg": 0.0, "rebuild": 0.0}
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            for case in CASES:
                definition = parse(case.definition)
                query = members_query(APP, definition, head, NOW_US)
                pg_s, rows = _median_timed(RUNS, _preview, conn, query)
                pg_members = {r[0] for r in rows}
                duck_sql = case.duckdb.format(through=head, now=NOW_US)
                dd_s, dd_rows = _median_timed(RUNS, _fetch, db, duck_sql)
                _compare(case, pg_members, {r[0] for r in dd_rows})
                write(log, iter(definitions.define(case.segment_id, case.definition)))
                rebuild_s, _ = _timed(builder.build, APP, case.segment_id, 1, head, case.definition)
                progress = conn.execute(
                    f"SELECT status, users FROM {schema.SEGMENT_BUILD_PROGRESS_TABLE}"
                    " WHERE app_id = %s AND segment_id = %s",
                    (APP, case.segment_id),
                ).fetchone()
                assert progress is not None and progress[0] == "stored", progress
                for key, seconds in (("pg", pg_s), ("duckdb", dd_s), ("rebuild", rebuild_s)):
                    totals[key] += seconds
                for key, seconds in (("pg", pg_s), ("rebuild", rebuild_s)):
                    slowest[key] = min(slowest[key], events / seconds)
                    worst_ratio[key] = max(worst_ratio[key], seconds / dd_s)
                report.add(
                    Row(
                        NAME,
                        case.segment_id,
                        {
                            "members": len(pg_members),
                            "events read": _read_events(conn, case, head),
                            "preview s": pg_s,
                            "preview events/s": events / pg_s,
                            "duckdb s": dd_s,
                            "duckdb events/s": events / dd_s,
                            "preview/duckdb": pg_s / dd_s,
                            "rebuild s": rebuild_s,
                            "rebuild events/s": events / rebuild_s,
                            "rebuild/duckdb": rebuild_s / dd_s,
                            "build users": int(progress[1]),
                        },
                        "same members in both",
                    )
                )
    finally:
        log.close()
        store.datastore.close()
        db.close()
    n = len(CASES)
    met = {
        key: slowest[key] >= GOAL_RATE and worst_ratio[key] <= GOAL_RATIO
        for key in ("pg", "rebuild")
    }
    report.add(
        Row(
            NAME,
            f"all {n} definitions",
            {
                "preview s": totals["pg"],
                "preview events/s": n * events / totals["pg"],
                "duckdb s": totals["duckdb"],
                "duckdb events/s": n * events / totals["duckdb"],
                "preview/duckdb": totals["pg"] / totals["duckdb"],
                "rebuild s": totals["rebuild"],
                "rebuild events/s": n * events / totals["rebuild"],
                "rebuild/duckdb": totals["rebuild"] / totals["duckdb"],
                "wall s": time.perf_counter() - wall,
            },
            f"goal >= {GOAL_RATE:,} events/s and <= {GOAL_RATIO:g}x DuckDB for every definition:"
            f" preview {'met' if met['pg'] else 'NOT met'}"
            f" (slowest {slowest['pg']:,.0f}/s, worst {worst_ratio['pg']:.1f}x),"
            f" rebuild {'met' if met['rebuild'] else 'NOT met'}"
            f" (slowest {slowest['rebuild']:,.0f}/s, worst {worst_ratio['rebuild']:.1f}x)",
        )
    )
