"""RFM cut points of a partitioned deployment: over every partition's purchasers, recorded.

Scores are ranks among all of an app's purchasers, who live in every partition. The
worker holding partition 0 computes the app's cut points at every recompute interval
(`RfmPolicy.recompute_minutes`, on the wall clock like the ticker) from the purchasers'
current values, which each partition's fold keeps in `projector_rfm_values`, with the
very rule a single log uses (`rfm.Quintiles.of`), and records them in partition 0's log
(`RfmCutPointsRecorded`, its id from app and interval: recorded once). Partition 0
relays them to every partition, where they settle the scores they move. So every
partition's fold stays a pure function of its log, and scores equal a fresh computation
over the purchases folded when the cut points were read, at most one interval (plus
the time to read and relay them) behind. An interval in which no purchaser's values
moved records nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from services.eventlog.partition_events import RfmCutPointsRecorded, mail_uuid
from services.eventlog.partitioned import PartitionedLog
from services.projector import schema
from services.projector.adapters.store import ProjectorStore
from services.projector.domain import rfm
from services.projector.domain.fold_state import PolicySource

_log = structlog.get_logger("projector.rfm")
DAY_US = 86_400_000_000


class RfmCoordinator:
    def __init__(
        self,
        log: PartitionedLog,
        stores: list[ProjectorStore],
        policies: PolicySource,
        active: Callable[[], bool],
        clock_us: Callable[[], int] = lambda: time.time_ns() // 1000,
    ) -> None:
        """`stores`: one per database of the deployment; `active()`: whether this process
        holds partition 0 (only its holder records cut points)."""
        self._log = log
        self._stores = stores
        self._policies = policies
        self._active = active
        self._clock_us = clock_us
        self._slots: dict[str, int] = {}
        self._seen: dict[str, tuple[object, ...]] = {}

    def run(self, stop: threading.Event, every_s: float = 1.0) -> None:
        while not stop.wait(every_s):
            if not self._active():
                continue
            try:
                self.record_due()
            except Exception as error:  # a database away: the next round
                _log.warning("RFM cut points not recorded yet", error=repr(error))

    def record_due(self) -> int:
        """Record the cut points of every app whose interval began; how many were."""
        now = self._clock_us()
        recorded = 0
        for app_id in sorted(self._apps() | set(self._seen)):
            interval = self._policies(app_id).rfm.recompute_minutes * 60_000_000
            slot = now // interval
            if slot <= self._slots.get(app_id, 0):
                continue
            values = self._values(app_id)
            seen = (now // DAY_US, len(values), *(sum(v[i] for v in values) for i in range(3)))
            self._slots[app_id] = slot
            if self._seen.get(app_id) == seen:
                continue  # nothing moved since the last cut points (the same day)
            quintiles = rfm.Quintiles.of(rfm.RfmValues(int(a), int(b), c) for a, b, c in values)
            self._record(app_id, slot, slot * interval, quintiles)
            self._seen[app_id] = seen
            recorded += 1
        return recorded

    def _apps(self) -> set[str]:
        apps: set[str] = set()
        for store in self._stores:
            with store.cursor() as curs:
                curs.execute(f"SELECT DISTINCT app_id FROM {schema.RFM_VALUES_TABLE}")
                apps.update(str(row["app_id"]) for row in curs.fetchall())
        return apps

    def _values(self, app_id: str) -> list[tuple[float, float, float]]:
        out: list[tuple[float, float, float]] = []
        for store in self._stores:
            with store.cursor() as curs:
                curs.execute(
                    "SELECT last_purchase_us, purchases, amount"
                    f" FROM {schema.RFM_VALUES_TABLE} WHERE app_id = %s",
                    (app_id,),
                )
                out.extend(
                    (float(r["last_purchase_us"]), float(r["purchases"]), float(r["amount"]))
                    for r in curs.fetchall()
                )
        return out

    def _record(self, app_id: str, slot: int, tick_us: int, quintiles: rfm.Quintiles) -> None:
        event = RfmCutPointsRecorded(
            originator_id=mail_uuid("rfm", app_id, slot),
            originator_version=1,
            app_id=app_id,
            slot=slot,
            tick_time_us=tick_us,
            quintiles=quintiles.to_dict(),
        )
        self._log.append(0, [self._log.encode(event)])
        _log.info("RFM cut points recorded", app_id=app_id, purchasers=quintiles.purchasers)
