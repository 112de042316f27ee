"""Read a process's Prometheus metrics in tests (the text format, parsed by the client)."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def scrape(
    port: int, host: str = "127.0.0.1"
) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample: name -> (sorted labels) -> value."""
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def held_partitions(port: int) -> set[int]:
    """The partitions a projector process says it folds (cohortflow_projector_partition_held)."""
    samples = scrape(port).get("cohortflow_projector_partition_held", {})
    return {int(dict(labels)["partition"]) for labels, value in samples.items() if value == 1}
