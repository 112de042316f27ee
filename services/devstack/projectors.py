"""`make run` with several projector processes and a partitioned log.

`PROJECTOR_WORKERS=N` (default 1) starts N projector processes: the first is the
`projector` every other service and the CLI talk to, the others (`projector-2`, ...)
listen on ports of their own and share the partitions with it through their leases.
`COHORTFLOW_PARTITIONS=P` is read when the dev database is created (the deployment
records it); later starts must leave it unset or give the same number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.devstack.stack import ServiceSpec

WORKERS_ENV = "PROJECTOR_WORKERS"
PARTITIONS_ENV = "COHORTFLOW_PARTITIONS"
MAX_WORKERS = 16
MAX_PARTITIONS = 1024


def _count(environ: Mapping[str, str], variable: str, most: int) -> int | None:
    text = environ.get(variable, "").strip()
    if not text:
        return None
    if not text.isdigit() or not 1 <= int(text) <= most:
        msg = f"{variable}={text!r}: expected a whole number from 1 to {most}"
        raise ValueError(msg)
    return int(text)


def projector_workers(environ: Mapping[str, str]) -> int:
    """How many projector processes to start (PROJECTOR_WORKERS, default 1)."""
    return _count(environ, WORKERS_ENV, MAX_WORKERS) or 1


def partitions_setting(environ: Mapping[str, str]) -> int | None:
    """COHORTFLOW_PARTITIONS as given (None: unset, the recorded number or 1 applies)."""
    return _count(environ, PARTITIONS_ENV, MAX_PARTITIONS)


def extra_projectors(projector: ServiceSpec, workers: int) -> list[ServiceSpec]:
    """The specs of projector processes 2..workers: the projector's module and variables,
    named `projector-N`, on ports of their own, and no client variable (the others find
    the first one)."""
    return [
        replace(
            projector,
            name=f"{projector.name}-{n}",
            default_port=0,
            default_metrics_port=0,
            client_env=None,
            own_settings=False,
        )
        for n in range(2, workers + 1)
    ]
