"""The simulated population: reproducible, plausible, with late uploads and retried batches."""

from __future__ import annotations

import ast
import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from services.cli.simulator import ConfigError, SimulationConfig
from services.cli.simulator.behaviour import simulate
from services.cli.simulator.model import US_PER_DAY, Behaviour, Emission, Kind, Window
from services.cli.simulator.population import persona

START = datetime(2025, 3, 1, tzinfo=UTC)
WINDOW = Window(
    int(START.timestamp()) * 1_000_000, int(START.timestamp()) * 1_000_000 + 60 * US_PER_DAY
)
SKEWED = Behaviour(late_fraction=0.2, duplicate_fraction=0.1)


@cache
def population(
    users: int = 2000, seed: int = 7, behaviour: Behaviour = SKEWED
) -> tuple[Emission, ...]:
    return tuple(simulate(seed, users, WINDOW, behaviour, f"sim{seed}"))


def fingerprint(emissions: tuple[Emission, ...]) -> list[tuple[object, ...]]:
    return [
        (
            e.send_us,
            e.kind,
            e.identify,
            tuple(
                (ev.event_id, ev.time_us, ev.name, tuple(sorted(ev.properties.items())), ev.place)
                for ev in e.events
            ),
        )
        for e in emissions
    ]


def test_the_same_seed_gives_the_same_events_ids_and_times() -> None:
    again = tuple(simulate(7, 300, WINDOW, SKEWED, "sim7"))
    assert fingerprint(again) == fingerprint(tuple(simulate(7, 300, WINDOW, SKEWED, "sim7")))
    other = tuple(simulate(8, 300, WINDOW, SKEWED, "sim7"))
    assert fingerprint(other) != fingerprint(again)


def test_a_user_is_the_same_whatever_the_population_size() -> None:
    def user_3(emissions: tuple[Emission, ...]) -> list[tuple[object, ...]]:
        return fingerprint(tuple(e for e in emissions if e.user_index == 3))

    assert user_3(tuple(simulate(7, 10, WINDOW, SKEWED, "p"))) == user_3(
        tuple(simulate(7, 50, WINDOW, SKEWED, "p"))
    )


def test_emissions_come_in_sending_order_and_events_within_the_window() -> None:
    emissions = population()
    assert [e.order for e in emissions] == sorted(e.order for e in emissions)
    events = [ev for e in emissions for ev in e.events]
    assert all(WINDOW.start_us <= ev.time_us < WINDOW.end_us for ev in events)
    assert all(e.send_us <= WINDOW.end_us for e in emissions)
    for e in emissions:
        assert all(e.send_us >= ev.time_us for ev in e.events), "sent before it happened"


def test_every_user_starts_with_an_install_and_signs_up_at_most_once() -> None:
    first: dict[str, str] = {}
    identifies: Counter[str] = Counter()
    for e in sorted(population(), key=lambda e: min((ev.time_us for ev in e.events), default=0)):
        for ev in sorted(e.events, key=lambda ev: ev.time_us):
            first.setdefault(ev.user_id, ev.name)
        if e.identify is not None:
            identifies[e.identify.user_id] += 1
    assert set(first.values()) == {"$app_installed"}
    assert max(identifies.values()) == 1
    assert 0.8 < len(identifies) / len(first) < 0.9  # identify_share 0.85


def test_late_uploads_and_retries_come_in_the_configured_shares() -> None:
    kinds = Counter(e.kind for e in population())
    sessions = kinds[Kind.SESSION] + kinds[Kind.LATE]
    assert kinds[Kind.LATE] / sessions == pytest.approx(0.2, abs=0.03)
    assert kinds[Kind.RETRY] / sessions == pytest.approx(0.1, abs=0.03)
    for e in population():
        if e.kind is Kind.LATE and e.send_us < WINDOW.end_us:
            assert e.send_us - e.events[-1].time_us >= 3600 * 1_000_000


def test_a_retry_resends_the_same_event_ids_after_the_first_send() -> None:
    first_sent: dict[str, int] = {}
    retried = 0
    for e in population():
        for ev in e.events:
            if e.kind is Kind.RETRY:
                assert first_sent[ev.event_id] <= e.send_us
                retried += 1
            else:
                assert ev.event_id not in first_sent, "an event id used twice"
                first_sent[ev.event_id] = e.send_us
    assert retried > 0


def test_cadences_differ_and_users_drift_away() -> None:
    sessions: dict[str, list[int]] = defaultdict(list)
    names: Counter[str] = Counter()
    for e in population():
        if e.kind is Kind.RETRY:
            continue
        for ev in e.events:
            names[ev.name] += 1
            if ev.name == "App Opened":
                sessions[ev.user_id].append(ev.time_us)
    by_type: dict[str, list[int]] = defaultdict(list)
    for index in range(2000):
        p, _ = persona(7, index, f"sim7-u{index:05d}", WINDOW.start_us, WINDOW.end_us, SKEWED)
        by_type[p.archetype.name].append(len(sessions[p.user_id]))
    assert len(by_type["daily"]) / 2000 == pytest.approx(0.2, abs=0.03)
    assert len(by_type["weekly"]) / 2000 == pytest.approx(0.35, abs=0.03)
    mean = {name: statistics.mean(counts) for name, counts in by_type.items()}
    assert mean["daily"] > 2 * mean["weekly"] > 2 * mean["occasional"]
    assert names["$app_uninstalled"] > 0
    assert names["$app_installed"] > 2000, "nobody came back and reinstalled"
    assert names["Added to Cart"] > names["Order Completed"] > 0, "no abandoned carts"


def test_revenue_is_log_normal_skewed() -> None:
    revenue = [
        ev.properties["revenue"]
        for e in population()
        if e.kind is not Kind.RETRY
        for ev in e.events
        if ev.name == "Order Completed"
    ]
    median = statistics.median(revenue)
    assert 22 < median < 40  # exp(3.4) = 30
    assert statistics.mean(revenue) > median  # a long right tail
    assert min(revenue) > 0


def test_sessions_happen_mostly_in_the_local_day() -> None:
    hours: Counter[int] = Counter()
    for e in population():
        for ev in e.events:
            if ev.name == "App Opened":
                local = datetime.fromtimestamp(ev.time_us / 1e6, ZoneInfo(ev.place.timezone))
                hours[local.hour] += 1
    night = sum(hours[h] for h in range(1, 6))
    evening = sum(hours[h] for h in range(18, 23))
    assert evening > 5 * night


def test_the_default_window_ends_at_midnight_before_now() -> None:
    now = datetime(2025, 6, 10, 15, 30, tzinfo=UTC)
    window = SimulationConfig(days=30).window(now)
    assert window.end_us == int(datetime(2025, 6, 10, tzinfo=UTC).timestamp()) * 1_000_000
    assert window.end_us - window.start_us == 30 * US_PER_DAY
    assert SimulationConfig(seed=4).id_prefix(window) == "sim4-20250511"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (SimulationConfig(start=datetime(2025, 6, 20, tzinfo=UTC), days=1), "in the future"),
        (SimulationConfig(start=datetime(2000, 1, 1, tzinfo=UTC), days=1), "within the last"),
        (SimulationConfig(users=0), "--users"),
        (SimulationConfig(speed=-1), "--speed"),
    ],
)
def test_windows_ingest_would_refuse_are_refused_first(
    config: SimulationConfig, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        config.window(datetime(2025, 6, 10, 15, 30, tzinfo=UTC))


def test_a_start_within_a_day_is_allowed_up_to_ingest_limits() -> None:
    now = datetime(2025, 6, 10, 15, 30, tzinfo=UTC)
    config = SimulationConfig(start=now - timedelta(hours=2), days=0.5)
    window = config.window(now)
    assert window.end_us > int(now.timestamp()) * 1_000_000
    assert config.id_prefix(window) == "sim1-202506101330"


def test_generation_imports_nothing_of_the_wire() -> None:
    folder = Path(__file__).resolve().parents[3] / "services" / "cli" / "simulator"
    for module in ("model", "cities", "population", "behaviour"):
        tree = ast.parse((folder / f"{module}.py").read_text())
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            (node.module or "").split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
        }
        assert not imported & {"grpc", "cohortflow", "google", "nats", "psycopg"}, module
