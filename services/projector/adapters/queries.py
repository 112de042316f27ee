"""Reads behind ProfileService: profiles, lifecycle counts (now and as of), timelines.

A user's rows are read in their partition's database; counts over an app add up every
database's (adapters/fanout.py).
"""

from __future__ import annotations

from typing import Any

from services.projector import schema
from services.projector.adapters.fanout import Fanout, summed
from services.projector.adapters.store import ProjectorStore


def _lifecycle_counts(store: ProjectorStore, app_id: str, as_of_us: int | None) -> dict[str, int]:
    with store.cursor() as curs:
        if as_of_us is None:
            curs.execute(
                f"SELECT lifecycle_state AS state, count(*) AS n FROM {schema.PROFILES_TABLE}"
                " WHERE app_id = %s AND lifecycle_state <> '' GROUP BY 1",
                (app_id,),
            )
        else:
            # Each user's latest change made (by sequence) that took effect by then:
            # a correction, dated before the change it corrects, replaces it. (Ordered
            # by effective time, a corrected churn would outlive its correction.)
            curs.execute(
                "SELECT to_value AS state, count(*) AS n FROM ("
                " SELECT DISTINCT ON (user_id) to_value"
                f" FROM {schema.CHANGES_TABLE}"
                " WHERE app_id = %s AND kind = 'lifecycle' AND effective_us <= %s"
                " ORDER BY user_id, sequence DESC"
                ") latest WHERE to_value <> '' GROUP BY 1",
                (app_id, as_of_us),
            )
        return {row["state"]: int(row["n"]) for row in curs.fetchall()}


class ProfileQueries:
    def __init__(self, stores: ProjectorStore | Fanout) -> None:
        self._fan = Fanout.of(stores)

    def profile(self, app_id: str, user_id: str) -> dict[str, Any] | None:
        """The profile row, with the recorded clock (`clock_us`) it is as of."""
        with self._fan.of_user(app_id, user_id).cursor() as curs:
            curs.execute(
                f"SELECT p.*, (SELECT value FROM {schema.META_TABLE} m WHERE m.name = 'now_us'"
                " AND m.partition = p.partition)"
                f" AS clock_us FROM {schema.PROFILES_TABLE} p WHERE app_id = %s AND user_id = %s",
                (app_id, user_id),
            )
            return curs.fetchone()

    def lifecycle_counts(self, app_id: str, as_of_us: int | None) -> dict[str, int]:
        return summed(self._fan.each(lambda store: _lifecycle_counts(store, app_id, as_of_us)))

    def timeline(
        self, app_id: str, user_id: str, after_sequence: int, limit: int
    ) -> list[dict[str, Any]]:
        with self._fan.of_user(app_id, user_id).cursor() as curs:
            curs.execute(
                f"SELECT * FROM {schema.CHANGES_TABLE}"
                " WHERE app_id = %s AND user_id = %s AND sequence > %s"
                " AND kind IN ('lifecycle', 'rfm')"
                " ORDER BY sequence LIMIT %s",
                (app_id, user_id, after_sequence, limit),
            )
            return list(curs.fetchall())
