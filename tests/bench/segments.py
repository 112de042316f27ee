"""Projector throughput with 50 active segments of mixed kinds, and memory per user.

The segments are defined (and built, on an empty history) before the synthetic
history is written, so the run measures live incremental evaluation only. The
same history runs without segments first, as the baseline in the same run.
"""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any

import orjson

from services.eventlog.store import open_event_log
from tests.bench import projector as projector_bench
from tests.bench.history import CATEGORIES, COUNTRIES, synthetic, write
from tests.bench.report import Report, Row, sibling_database
from tests.support.logevents import T0, tick
from tests.support.segments import Definitions

NAME = "segments"


def fifty_segments() -> dict[str, dict[str, Any]]:
    """Ten each of five families, varied so most trackers are not shared."""
    out: dict[str, dict[str, Any]] = {}
    for i in range(10):
        category = CATEGORIES[i % len(CATEGORIES)]
        out[f"carts-{i}"] = {
            "events": {
                "name": "Added to Cart",
                "window": f"{1 + i}d",
                "op": ">=",
                "value": 1 + i % 3,
                "where": [{"property": "category", "op": "=", "value": category}],
            }
        }
        out[f"spend-{i}"] = {
            "events": {
                "name": "Order Completed",
                "window": f"{7 * (1 + i)}d",
                "aggregate": "sum",
                "property": "revenue",
                "op": ">",
                "value": 20 * (1 + i),
            }
        }
        out[f"lapsed-{i}"] = {"recency": {"name": "App Opened", "more_than": f"{1 + i}d"}}
        out[f"abandoned-{i}"] = {
            "inaction": {
                "did": "Added to Cart",
                "not_did": "Order Completed",
                "within": f"{2 + i}h",
                "where": [{"property": "category", "op": "=", "value": category}],
            }
        }
        out[f"mixed-{i}"] = {
            "all": [
                {"lifecycle": ["active", "loyal", "new"] if i % 2 else ["dormant", "churned"]},
                {"geo": {"countries": [COUNTRIES[i % len(COUNTRIES)]]}},
                {"any": [{"segment": f"carts-{i}"}, {"rfm": ["champions", "loyal"]}]},
            ]
        }
    return out


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize()


def run(report: Report, database_url: str, workdir: Path, heavy: bool = False) -> None:
    users, days = 100_000, (21 if heavy else 5)
    results = {}
    for label, with_segments in (("baseline: no segments", False), ("50 segments", True)):
        with sibling_database(database_url, "seg" if with_segments else "noseg") as url:
            log = open_event_log(url, pool_size=2)
            prelude: list[object] = [tick(T0 - 1)]
            if with_segments:
                definitions = Definitions()
                for segment_id, condition in fifty_segments().items():
                    prelude += definitions.define(segment_id, condition)
                    prelude += definitions.built(segment_id, len(prelude))
            write(log, iter(prelude))
            count = write(log, synthetic(users, days, events_per_user_day=2, seed=7))
            head = log.head_position()
            log.close()
            print(f"[{NAME}] {label}: {count:,} events written, projecting...", flush=True)
            before = _rss_bytes()
            elapsed, changes = projector_bench._run_projection(url, head, 2000)
            grown = _rss_bytes() - before
            import psycopg

            with psycopg.connect(url) as conn:
                row = conn.execute(
                    "SELECT count(*), avg(length(state)) FROM projector_profiles"
                ).fetchone()
                members = conn.execute("SELECT count(*) FROM segment_members").fetchone()[0]
            profiles, stored_bytes = int(row[0]), float(row[1] or 0)
            results[label] = count / elapsed
            figures: dict[str, Any] = {
                "events": count,
                "users": profiles,
                "events/s": count / elapsed,
                "changes": changes,
                "stored state B/user": stored_bytes,
                "process growth B/user": grown / max(profiles, 1),
            }
            if with_segments:
                figures["vs no segments"] = results[label] / results["baseline: no segments"]
                figures["members now"] = members
            report.add(Row(NAME, label, figures))
    _ = orjson  # state sizes above are of the stored (orjson) form
