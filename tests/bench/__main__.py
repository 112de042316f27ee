"""python -m tests.bench [--only NAME] [--heavy] [--out DIR]: run the benchmarks (make bench).

Each benchmark runs beside its baseline in the same run, on the same servers
(the machine's PostgreSQL/NATS if running, else embedded ones), and the whole
report is written as Markdown and JSON.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from services.migrate import migrate
from tests.bench import (
    campaign,
    console,
    durability,
    history_import,
    ingest,
    memory,
    partitions,
    projector,
    replay,
    sealing,
    segments,
    simulation,
)
from tests.bench.report import Report
from tests.support.infra import PostgresForTests

BENCHMARKS = {
    "ingest": ingest.run,
    "projector": projector.run,
    "segments": segments.run,
    "campaign": campaign.run,
    "replay": replay.run,
    "simulation": simulation.run,
    "durability": durability.run,
    "memory": memory.run,
    "console": console.run,
    "history": history_import.run,
    "sealing": sealing.run,
    "partitions": partitions.run,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append")
    parser.add_argument("--heavy", action="store_true", help="larger sizes (slower)")
    parser.add_argument("--out", type=Path, default=Path("var/bench"))
    args = parser.parse_args(argv)
    report = Report(
        commands=[
            "make bench" + (" BENCH_ARGS='" + " ".join(sys.argv[1:]) + "'" if sys.argv[1:] else "")
        ]
    )
    with tempfile.TemporaryDirectory(prefix="cf-bench-") as tmp:
        workdir = Path(tmp)
        postgres = PostgresForTests(workdir)
        try:
            for name in args.only or list(BENCHMARKS):
                database_url = postgres.create_database()
                migrate(database_url)
                try:
                    BENCHMARKS[name](report, database_url, workdir, heavy=args.heavy)
                finally:
                    postgres.drop_database(database_url)
        finally:
            postgres.close()
    md, js = report.write(args.out)
    print()
    print(report.to_markdown())
    print(f"written: {md} {js}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
