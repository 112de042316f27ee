"""CPU time of a benchmark's processes and of the PostgreSQL backends serving it.

Read from /proc through psutil, as user + system seconds so far; a benchmark samples at
two moments and takes the difference per role.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psutil
import psycopg


@dataclass
class CpuSample:
    """CPU seconds (user + system) so far: of each process we started, by role, and of the
    PostgreSQL backends serving the benchmark's database (per backend pid)."""

    at: float
    roles: dict[str, float]
    backends: dict[int, float]


class CpuMeter:
    """CPU time of the processes of a run (`roles`: name -> pids) and of PostgreSQL's
    backends connected to `database` (read from /proc through psutil; PostgreSQL's shared
    background processes, WAL writer and checkpointer, are not counted)."""

    def __init__(self, database_url: str, roles: dict[str, list[int]]) -> None:
        self._url = database_url
        self._roles = roles
        self.backends_readable = True

    def sample(self) -> CpuSample:
        roles = {role: sum(_cpu(pid) for pid in pids) for role, pids in self._roles.items()}
        backends: dict[int, float] = {}
        with psycopg.connect(self._url, autocommit=True) as conn:
            pids = [
                int(r[0])
                for r in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid()"
                )
            ]
        for pid in pids:
            try:
                backends[pid] = _cpu(pid, strict=True)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                self.backends_readable = False  # another pid namespace or user: not ours
        return CpuSample(time.perf_counter(), roles, backends)


def cpu_between(a: CpuSample, b: CpuSample) -> dict[str, float]:
    """CPU seconds each role (and 'postgres', the backends) spent from `a` to `b`."""
    spent = {role: b.roles[role] - a.roles.get(role, 0.0) for role in b.roles}
    spent["postgres"] = sum(cpu - a.backends.get(pid, 0.0) for pid, cpu in b.backends.items())
    return spent


def _cpu(pid: int, *, strict: bool = False) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        if strict:
            raise
        return 0.0
    return float(times.user + times.system)
