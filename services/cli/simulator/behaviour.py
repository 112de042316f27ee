"""What simulated users do, as a stream of emissions in sending order.

A user installs, signs up (Identify), and comes back at its cadence; each session
opens the app, views products, sometimes fills a cart, and sometimes orders
(log-normal revenue); carts are otherwise abandoned. Gaps grow session by session
(drift towards dormancy); users leave (some uninstall) and some come back. Some
sessions are uploaded late by offline devices, and some batches are sent twice.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Iterator

from services.cli.simulator.model import (
    US_PER_DAY,
    US_PER_S,
    Behaviour,
    Emission,
    Kind,
    SimEvent,
    Window,
)
from services.cli.simulator.population import Persona, at_local_hour, persona, sign_up

US_PER_HOUR = 3600 * US_PER_S
CATALOG = (
    ("sku-1001", "shoes", 89.0),
    ("sku-1002", "shoes", 120.0),
    ("sku-2001", "apparel", 35.0),
    ("sku-2002", "apparel", 49.0),
    ("sku-3001", "electronics", 199.0),
    ("sku-3002", "electronics", 29.0),
    ("sku-4001", "home", 59.0),
    ("sku-4002", "home", 15.0),
    ("sku-5001", "beauty", 22.0),
    ("sku-5002", "beauty", 12.5),
    ("sku-6001", "books", 18.0),
    ("sku-6002", "sports", 75.0),
)


class _User:
    """One user's generator state: its ids, clock and emissions not yet due."""

    def __init__(self, p: Persona, rng: random.Random, ids: str, window: Window) -> None:
        self.p, self.rng, self.window = p, rng, window
        self._ids = (f"{ids}-u{p.index}-{n}" for n in itertools.count())
        self._seq = itertools.count()
        self.pending: list[tuple[int, int, Emission]] = []

    def next_id(self) -> str:
        return next(self._ids)

    def push(
        self, kind: Kind, send_us: int, events: tuple[SimEvent, ...] = (), **kw: object
    ) -> int:
        seq = next(self._seq)
        emission = Emission(send_us, self.p.index, seq, kind, events, **kw)  # type: ignore[arg-type]
        heapq.heappush(self.pending, (send_us, seq, emission))
        return send_us

    def due(self, until_us: float) -> Iterator[Emission]:
        while self.pending and self.pending[0][0] <= until_us:
            yield heapq.heappop(self.pending)[2]

    def event(self, name: str, at_us: int, properties: dict[str, str | float | bool]) -> SimEvent:
        return SimEvent(self.next_id(), self.p.user_id, name, at_us, properties, self.p.place)


def _session(u: _User, start_us: int, install: bool, behaviour: Behaviour) -> list[SimEvent]:
    rng, p = u.rng, u.p
    clock = start_us
    events: list[SimEvent] = []

    def add(name: str, properties: dict[str, str | float | bool]) -> None:
        nonlocal clock
        events.append(u.event(name, clock, properties))
        clock += rng.randrange(5, 120) * US_PER_S + rng.randrange(US_PER_S)

    if install:
        add("$app_installed", {"store": "app_store" if p.place.platform == "ios" else "play"})
    source = rng.choices(("organic", "push", "deeplink", "email"), (14, 3, 2, 1))[0]
    add("App Opened", {"source": source})
    cart: list[tuple[str, str, float]] = []
    views = min(10, 1 + int(math.log(1 - rng.random()) / math.log(0.6)))
    for _ in range(views):
        product, category, price = rng.choice(CATALOG)
        add("Viewed Product", {"product_id": product, "category": category, "price": price})
        if rng.random() < 0.15 * p.buyer:
            quantity = float(rng.choice((1, 1, 1, 2, 3)))
            cart.append((product, category, price))
            add(
                "Added to Cart",
                {"product_id": product, "category": category, "price": price, "quantity": quantity},
            )
    if cart and rng.random() < behaviour.checkout_share:
        revenue = rng.lognormvariate(behaviour.revenue_mu + p.spend_shift, behaviour.revenue_sigma)
        order_id = f"ord-{events[-1].event_id}"
        add(
            "Order Completed",
            {
                "order_id": order_id,
                "revenue": round(revenue, 2),
                "currency": "USD",
                "items": float(len(cart)),
            },
        )
    return [e for e in events if e.time_us < u.window.end_us]


def _send(u: _User, events: list[SimEvent], behaviour: Behaviour) -> None:
    """Queue a session's upload: on time, or late; and sometimes a retry of it."""
    rng, end = u.rng, u.window.end_us
    sent = events[-1].time_us + rng.randrange(1, 30) * US_PER_S
    kind = Kind.SESSION
    if rng.random() < behaviour.late_fraction:
        sent += rng.randrange(1 * US_PER_HOUR, 72 * US_PER_HOUR)
        kind = Kind.LATE
    sent = u.push(kind, min(sent, end), tuple(events))
    if rng.random() < behaviour.duplicate_fraction:
        u.push(Kind.RETRY, min(sent + rng.randrange(2, 120) * US_PER_S, end), tuple(events))


def _gap_us(u: _User, mean_gap_days: float) -> int:
    # log-normal around the mean: a cadence with some irregularity (mean preserved)
    days = mean_gap_days * u.rng.lognormvariate(-0.125, 0.5)
    return max(int(days * US_PER_DAY), US_PER_HOUR)


def user_emissions(u: _User, behaviour: Behaviour) -> Iterator[Emission]:
    p, rng, end = u.p, u.rng, u.window.end_us
    if rng.random() < behaviour.identify_share:
        at = p.install_us + rng.randrange(30, 600) * US_PER_S
        if at < end:
            u.push(Kind.IDENTIFY, at + US_PER_S, identify=sign_up(p, rng, u.next_id(), at))
    at, install, mean_gap = p.install_us, True, p.archetype.mean_gap_days
    while at < end:
        yield from u.due(at)
        events = _session(u, at, install, behaviour)
        install = False
        if not events:
            break
        _send(u, events, behaviour)
        last = events[-1].time_us
        if rng.random() < p.archetype.churn_hazard:
            back = last + rng.randrange(14 * US_PER_DAY, 60 * US_PER_DAY)
            if rng.random() < behaviour.uninstall_share:
                gone = last + rng.randrange(1 * US_PER_DAY, 20 * US_PER_DAY)
                if gone < end:
                    u.push(Kind.SESSION, gone, (u.event("$app_uninstalled", gone, {}),))
                back, install = gone + rng.randrange(3 * US_PER_DAY, 45 * US_PER_DAY), True
            if rng.random() >= behaviour.return_share:
                break
            at, mean_gap = at_local_hour(back, p.place.timezone, rng), mean_gap * 1.5
            continue
        mean_gap *= p.archetype.decay
        at = at_local_hour(last + _gap_us(u, mean_gap), p.place.timezone, rng)
        if at <= last + US_PER_HOUR:
            at = at_local_hour(at + US_PER_DAY, p.place.timezone, rng)
    yield from u.due(math.inf)


def simulate(
    seed: int, users: int, window: Window, behaviour: Behaviour, id_prefix: str
) -> Iterator[Emission]:
    """Every emission of the population, in sending order; the same for the same inputs.

    User ids are `<id_prefix>-u<index>` padded; event ids `<id_prefix>-u<index>-<n>`.
    """
    streams = []
    for index in range(users):
        user_id = f"{id_prefix}-u{index:05d}"
        p, rng = persona(seed, index, user_id, window.start_us, window.end_us, behaviour)
        streams.append(user_emissions(_User(p, rng, id_prefix, window), behaviour))
    return heapq.merge(*streams, key=lambda e: e.order)
