"""A segment version's build over the partitions: each builds its own share of it."""

from __future__ import annotations

from typing import Any


def combined_build(shares: list[dict[str, Any]]) -> dict[str, Any] | None:
    """One build of the partitions' shares: failed if one failed, stored when all are,
    running while any is; counts added up, from the first start to the last finish."""
    if not shares:
        return None
    if len(shares) == 1:
        return shares[0]
    failed = [s for s in shares if s["status"] == "failed"]
    status = (
        "failed"
        if failed
        else "running"
        if any(s["status"] == "running" for s in shares)
        else "stored"
    )
    finished = [s["finished_us"] for s in shares]
    return {
        "status": status,
        "events_done": sum(s["events_done"] for s in shares),
        "events_total": sum(s["events_total"] for s in shares),
        "users": sum(s["users"] for s in shares),
        "started_us": min(s["started_us"] for s in shares),
        "finished_us": None if status == "running" or None in finished else max(finished),
        "error": "; ".join(s["error"] for s in failed if s["error"]),
    }
