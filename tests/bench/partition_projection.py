"""A reading of the partitions benchmark: its CPU split per event projected to more cores.

The model is plain arithmetic on measured CPU time per event (fold = the projector
processes, PostgreSQL = the backends serving them, NATS = the server): with C cores and
every part scaling with cores, the suite folds at most C / (sum of the three) events/s,
and each part takes its share of the cores. Two parts do not scale freely: the fold runs
one process per partition at most (P >= C assumed, e.g. P = 64), and the change stream is
one JetStream stream whose leader serialises its writes (about one core: 1 / NATS cost).
The first part to reach its own ceiling saturates first.
"""

from __future__ import annotations

import os
from typing import Any

CORES = (16, 64)


def _ceilings(costs: dict[str, float], cores: int) -> dict[str, float]:
    total = sum(costs.values())
    return {
        "cpu": cores * 1e6 / total,
        "nats stream": 1e6 / costs["NATS"] if costs["NATS"] > 0 else float("inf"),
    }


def projection(measured: dict[str, dict[str, dict[str, Any]]], case: str) -> list[str]:
    """Paragraphs (Markdown) projecting `case` of each workload to CORES."""
    lines = [
        "Projection to more cores from the CPU time per event of " + case + " (fold, "
        "PostgreSQL's backends, NATS; measured on this shared 2-core machine, so"
        " indicative). Each part takes its share of the cores; the change stream is one"
        " JetStream stream (one leader, about one core), the fold one process per"
        " partition (P >= cores assumed).",
        "",
        "| workload | cores | fold us/ev | PG us/ev | NATS us/ev | CPU-bound events/s"
        " | fold cores | PG cores | NATS cores | one-stream cap events/s | saturates first |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    verdicts = []
    for workload, cases in measured.items():
        figures = cases.get(case)
        if not figures:
            continue
        costs = {
            "fold": float(figures["projector CPU us/ev"]),
            "PostgreSQL": float(figures["PG CPU us/ev"]),
            "NATS": float(figures["NATS CPU us/ev"]),
        }
        total = sum(costs.values())
        for cores in CORES:
            ceiling = _ceilings(costs, cores)
            rate = min(ceiling.values())
            shares = {k: cores * v / total for k, v in costs.items()}
            if ceiling["nats stream"] < ceiling["cpu"]:
                first = "NATS (one stream's leader)"
            else:
                first = max(("fold", "PostgreSQL"), key=lambda k: costs[k])
                first += " (CPU)"
            lines.append(
                f"| {workload} | {cores} | {costs['fold']:.0f} | {costs['PostgreSQL']:.0f}"
                f" | {costs['NATS']:.0f} | {ceiling['cpu']:,.0f} | {shares['fold']:.1f}"
                f" | {shares['PostgreSQL']:.1f} | {shares['NATS']:.1f}"
                f" | {ceiling['nats stream']:,.0f} | {first} |"
            )
            verdicts.append((workload, cores, rate, first))
    lines.append("")
    for workload, cores, rate, first in verdicts:
        lines.append(
            f"- {workload}, {cores} cores: about {rate:,.0f} events/s; {first} saturates first."
        )
    for workload, cases in measured.items():
        one = cases.get(case.replace("2 processes", "1 process"))
        if one:
            used = one["to published events/s"] * sum(
                float(one[k]) for k in ("projector CPU us/ev", "PG CPU us/ev", "NATS CPU us/ev")
            )
            cores = used / 1e6
            machine = os.cpu_count() or 1
            reading = (
                "all the machine has: a second process has no core to run on"
                if cores >= 0.9 * machine
                else f"less than the machine's {machine}: the run waited on more than its own"
                " CPU (commits' and NATS' fsyncs, other load on the machine), so the"
                " CPU-bound figures above are ceilings, not forecasts"
            )
            lines.append(
                f"- {workload}: with one process, fold, PostgreSQL and NATS together kept"
                f" {cores:.1f} cores busy on average (from the window's start until every"
                f" change was published), {reading}."
            )
    lines.append(
        "- Past one stream's cap, more streams (one per group of partitions) spread the"
        " change stream; past one server's cores, the placement map spreads partitions over"
        " PostgreSQL servers. PostgreSQL's WAL writer and checkpointer are not counted here."
    )
    return ["\n".join(lines)]
