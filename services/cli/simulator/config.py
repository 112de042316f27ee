"""What a simulation is asked to do (SimulationConfig) and what it did (Summary)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cohortflow.ingest.v1 import ingest_pb2

from services.cli.output import violations_text
from services.cli.simulator.model import US_PER_S, Behaviour, Window

# Ingest refuses event times more than 24 h ahead; keep a margin for clock skew.
MAX_AHEAD = timedelta(hours=23)
MAX_DAYS = 3000  # ingest refuses events older than 3650 days


class ConfigError(ValueError):
    """A simulation that cannot run as asked; the message says which option and why."""


@dataclass(frozen=True)
class SimulationConfig:
    users: int = 1000
    days: float = 30.0
    seed: int = 1
    # simulated seconds per real second; 0 sends as fast as ingest accepts
    speed: float = 86_400.0
    # most events (and Identify calls) per real second; 0 for no cap
    rate: float = 0.0
    # start of simulated time; default: midnight UTC `days` before today's
    start: datetime | None = None
    batch_size: int = 500
    concurrency: int = 4
    behaviour: Behaviour = field(default_factory=Behaviour)

    def window(self, now: datetime) -> Window:
        """The simulated period, checked against ingest's limits on event times."""
        if self.users < 1 or not 0 < self.days <= MAX_DAYS:
            msg = f"--users must be at least 1 and --days between 0 and {MAX_DAYS}"
            raise ConfigError(msg)
        if self.speed < 0 or self.rate < 0:
            raise ConfigError("--speed and --rate must not be negative")
        midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        start = self.start or midnight - timedelta(days=self.days)
        end = start + timedelta(days=self.days)
        if end > now + MAX_AHEAD:
            msg = f"the simulation would end at {end:%Y-%m-%dT%H:%MZ}, in the future; ingest"
            raise ConfigError(msg + " refuses event times more than 24 h ahead")
        if start < now - timedelta(days=MAX_DAYS):
            raise ConfigError(f"--start must be within the last {MAX_DAYS} days")
        to_us = lambda moment: int(moment.timestamp() * US_PER_S)  # noqa: E731
        return Window(to_us(start), to_us(end))

    def id_prefix(self, window: Window) -> str:
        """Prefix of user and event ids: the same seed and start give the same ids."""
        start = datetime.fromtimestamp(window.start_us / US_PER_S, UTC)
        stamp = start.strftime("%Y%m%d" if start.time() == datetime.min.time() else "%Y%m%d%H%M")
        return f"sim{self.seed}-{stamp}"


@dataclass
class Summary:
    """What a simulation sent and what ingest answered (events and Identify calls)."""

    users: int
    window: Window
    id_prefix: str
    sent: int = 0
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    identifies: int = 0
    late_events: int = 0
    retried_events: int = 0
    calls: int = 0
    simulated_us: int = 0
    # Highest log position ingest answered: how far the log is known to reach.
    last_position: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    rejections: list[str] = field(default_factory=list)

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def rate(self) -> float:
        answered = self.accepted + self.duplicate + self.rejected
        return answered / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def progress(self) -> float:
        span = self.window.end_us - self.window.start_us
        return min(1.0, max(0.0, (self.simulated_us - self.window.start_us) / span))

    def example_user(self) -> str:
        return f"{self.id_prefix}-u{0:05d}"

    def as_dict(self) -> dict[str, object]:
        """The counts and window as plain data (for `--json` and scripts)."""
        iso = lambda us: datetime.fromtimestamp(us / US_PER_S, UTC).isoformat()  # noqa: E731
        return {
            "users": self.users,
            "start": iso(self.window.start_us),
            "end": iso(self.window.end_us),
            "id_prefix": self.id_prefix,
            "example_user": self.example_user(),
            "sent": self.sent,
            "accepted": self.accepted,
            "duplicate": self.duplicate,
            "rejected": self.rejected,
            "identifies": self.identifies,
            "late_events": self.late_events,
            "retried_events": self.retried_events,
            "calls": self.calls,
            "elapsed_s": round(self.elapsed, 3),
            "events_per_second": round(self.rate, 1),
            "rejections": self.rejections,
        }

    def count(self, result: ingest_pb2.EventResult) -> None:
        self.last_position = max(self.last_position, result.position)
        if result.status == ingest_pb2.EventResult.STATUS_ACCEPTED:
            self.accepted += 1
        elif result.status == ingest_pb2.EventResult.STATUS_DUPLICATE:
            self.duplicate += 1
        else:
            self.rejected += 1
            if len(self.rejections) < 20:
                why = violations_text(result.violations)
                self.rejections.append(f"{result.event_id}: {why}")
