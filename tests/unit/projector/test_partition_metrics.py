"""A partition's progress series leave with it: a worker that let it go reports no stale lag."""

from __future__ import annotations

from prometheus_client import REGISTRY

from services.projector.partitions import metrics


def _lag(partition: int) -> float | None:
    return REGISTRY.get_sample_value(
        "cohortflow_projector_partition_lag_events", {"partition": str(partition)}
    )


def test_a_partition_let_go_has_no_progress_series_here() -> None:
    for gauge in (metrics.PARTITION_POSITION, metrics.PARTITION_HEAD, metrics.PARTITION_LAG):
        gauge.labels("907").set(60_000)
    assert _lag(907) == 60_000
    metrics.forget_partition(907)
    assert _lag(907) is None
    assert (
        REGISTRY.get_sample_value("cohortflow_projector_partition_head", {"partition": "907"})
        is None
    )
    metrics.forget_partition(907)  # twice, or never held: nothing to drop
