"""The Prometheus series the services expose, and the metric names a PromQL query uses.

Every module under services/ that creates prometheus_client metrics is imported, and each
metric is expanded into the sample names it exposes (a Counter `x` is `x_total`, a
Histogram `x` is `x_bucket`, `x_count`, `x_sum`).
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import promql_parser
from prometheus_client.metrics import MetricWrapperBase

ROOT = Path(__file__).resolve().parents[3]
# Series Prometheus itself attaches to every scrape target.
SCRAPE_SERIES = {"up": frozenset(), "scrape_duration_seconds": frozenset()}
# Labels the scrape configuration adds (deploy/prometheus/prometheus.yml).
TARGET_LABELS = frozenset({"job", "instance", "namespace", "pod"})
_CREATES_METRICS = re.compile(r"\b(Counter|Gauge|Histogram|Summary)\(\s*\"cohortflow_")

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
}


def metric_modules() -> list[str]:
    """Modules of services/ that create cohortflow metrics."""
    names = []
    for path in sorted((ROOT / "services").rglob("*.py")):
        if path.name != "__main__.py" and _CREATES_METRICS.search(path.read_text()):
            names.append(".".join(path.relative_to(ROOT).with_suffix("").parts))
    return names


@cache
def exposed_series() -> dict[str, frozenset[str]]:
    """Sample name -> the label names it carries."""
    series: dict[str, frozenset[str]] = dict(SCRAPE_SERIES)
    for name in metric_modules():
        for value in vars(importlib.import_module(name)).values():
            if not isinstance(value, MetricWrapperBase):
                continue
            # prometheus_client keeps these on the wrapper; there is no public accessor.
            kind, base, labels = value._type, value._name, frozenset(value._labelnames)
            for suffix in _SUFFIXES[kind]:
                extra = {"le"} if suffix == "_bucket" else set()
                series[base + suffix] = labels | extra
    return series


@dataclass(frozen=True)
class Selector:
    metric: str
    labels: frozenset[str]


# Grafana's variables stand for durations in queries; give the parser one.
_GRAFANA_VARIABLES = re.compile(
    r"\$__(rate_interval|interval|range)|\$\{__(rate_interval|interval|range)\}"
)


def selectors(expr: str) -> list[Selector]:
    """The metric selectors of a PromQL expression; raises ValueError if it does not parse."""
    tree = promql_parser.parse(_GRAFANA_VARIABLES.sub("5m", expr))
    found: list[Selector] = []

    def visit(node: object) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            names = {m.name for m in node.matchers.matchers}
            metric = node.name or ""
            if not metric:  # {__name__="..."}
                metric = next(m.value for m in node.matchers.matchers if m.name == "__name__")
            found.append(Selector(metric, frozenset(names - {"__name__"})))
        return True

    promql_parser.walk(tree, visit)
    return found


def kept_labels(expr: str) -> frozenset[str] | None:
    """Labels every aggregation of `expr` keeps (`by`), or None if nothing is aggregated."""
    kept: set[str] | None = None

    def visit(node: object) -> bool:
        nonlocal kept
        if isinstance(node, promql_parser.AggregateExpr):
            modifier = node.modifier
            by = (
                set(modifier.labels)
                if modifier and modifier.type == promql_parser.AggModifierType.By
                else set()
            )
            kept = by if kept is None else kept & by
        return True

    promql_parser.walk(promql_parser.parse(_GRAFANA_VARIABLES.sub("5m", expr)), visit)
    return None if kept is None else frozenset(kept)


def unknown_names(expr: str) -> list[str]:
    """What `expr` selects that no service exposes: unknown metrics and unknown labels."""
    series = exposed_series()
    problems = []
    for selector in selectors(expr):
        if selector.metric not in series:
            problems.append(f"metric {selector.metric}")
            continue
        stray = selector.labels - series[selector.metric] - TARGET_LABELS
        problems += [f"label {label} on {selector.metric}" for label in sorted(stray)]
    return problems
