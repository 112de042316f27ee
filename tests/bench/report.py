"""Benchmark results: rows of figures, rendered as Markdown and JSON with machine facts."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@dataclass
class Row:
    benchmark: str
    case: str
    figures: dict[str, float | int | str]
    note: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    # Paragraphs under a benchmark's table (a reading of its figures).
    texts: dict[str, list[str]] = field(default_factory=dict)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print(render_row(row), flush=True)

    def say(self, benchmark: str, text: str) -> None:
        self.texts.setdefault(benchmark, []).append(text)
        print(f"[{benchmark}] {text}", flush=True)

    def to_markdown(self) -> str:
        out = [f"# cohortflow benchmarks ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)", ""]
        out.append("Machine: " + ", ".join(f"{k} {v}" for k, v in machine_facts().items()))
        out.append("")
        for benchmark in dict.fromkeys(r.benchmark for r in self.rows):
            rows = [r for r in self.rows if r.benchmark == benchmark]
            keys = list(dict.fromkeys(k for r in rows for k in r.figures))
            out.append(f"## {benchmark}")
            out.append("")
            out.append("| case | " + " | ".join(keys) + " | note |")
            out.append("|---|" + "---:|" * len(keys) + "---|")
            for r in rows:
                cells = [_fmt(r.figures.get(k, "")) for k in keys]
                out.append(f"| {r.case} | " + " | ".join(cells) + f" | {r.note} |")
            out.append("")
            for text in self.texts.get(benchmark, []):
                out += [text, ""]
        if self.commands:
            out += ["Commands:", "", *(f"    {c}" for c in self.commands), ""]
        return "\n".join(out)

    def write(self, directory: Path) -> tuple[Path, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        md, js = directory / "report.md", directory / "report.json"
        md.write_text(self.to_markdown())
        js.write_text(
            json.dumps(
                {
                    "machine": machine_facts(),
                    "rows": [asdict(r) for r in self.rows],
                    "texts": self.texts,
                    "commands": self.commands,
                },
                indent=2,
            )
        )
        return md, js


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def render_row(row: Row) -> str:
    figures = ", ".join(f"{k}={_fmt(v)}" for k, v in row.figures.items())
    return f"[{row.benchmark}] {row.case}: {figures}" + (f"  ({row.note})" if row.note else "")


@contextlib.contextmanager
def sibling_database(database_url: str, suffix: str, *, migrated: bool = True) -> Iterator[str]:
    """A fresh database next to `database_url` (migrated, one partition, unless not
    `migrated`), dropped afterwards."""
    import psycopg
    from psycopg import sql

    from services.common.database import with_database
    from services.migrate import migrate

    name = f"{database_url.rsplit('/', 1)[-1]}_{suffix}"
    admin = with_database(database_url, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(database_url, name)
    try:
        if migrated:
            migrate(url)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine_facts() -> dict[str, str]:
    facts = {
        "cpus": str(os.cpu_count()),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
        facts["memory"] = f"{kb / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    with contextlib.suppress(OSError):
        facts["git"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    facts["argv"] = " ".join(sys.argv[1:])
    return facts
