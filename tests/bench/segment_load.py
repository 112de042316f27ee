"""Load on ingest's HTTP tracking API: the events of `load.sample_event` as Segment
track calls, posted to /v1/batch (one connection per caller, as the SDKs keep one)."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from typing import Any

import httpx
import orjson

from tests.bench.load import LoadSpec, sample_event
from tests.support.segment_http import basic


def segment_call(n: int, run: str) -> dict[str, Any]:
    """`sample_event(n, run)` as the Segment track call that maps to it."""
    event = sample_event(n, run)
    return {
        "type": "track",
        "messageId": event.event_id,
        "userId": event.user_id,
        "event": event.name,
        "properties": {
            "sku": event.properties["sku"].string_value,
            "price": event.properties["price"].number_value,
            "quantity": event.properties["quantity"].number_value,
        },
        "context": {
            "device": {"type": event.context.platform},
            "app": {"version": event.context.app_version},
            "location": {"country": event.context.country},
        },
    }


def http_worker(spec: LoadSpec, run: str, ready: mp.Barrier, out: mp.Queue) -> None:  # type: ignore[type-arg]
    """One client process: `spec.callers` callers, each posting its batches in turn."""

    async def main() -> None:
        headers = {"Authorization": basic(spec.key), "Content-Type": "application/json"}
        bodies = []
        n = 0
        for _ in range(spec.callers * spec.calls):
            calls = [segment_call(n + i, run) for i in range(spec.batch)]
            bodies.append(orjson.dumps({"batch": calls}))
            n += spec.batch
        clients = [
            httpx.AsyncClient(base_url=spec.address, headers=headers, timeout=300)
            for _ in range(spec.callers)
        ]
        for i, client in enumerate(clients):  # connect and warm up, outside the timed window
            warm = [segment_call(j, f"{run}-warm{i}") for j in range(spec.batch)]
            (await client.post("/v1/batch", json={"batch": warm})).raise_for_status()
        latencies: list[float] = []
        ready.wait()
        start = time.perf_counter()

        async def caller(index: int) -> None:
            for body in bodies[index :: spec.callers]:
                t0 = time.perf_counter()
                answer = await clients[index].post("/v1/batch", content=body)
                answer.raise_for_status()
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(caller(i) for i in range(spec.callers)))
        end = time.perf_counter()
        for client in clients:
            await client.aclose()
        out.put((start, end, latencies))

    asyncio.run(main())
