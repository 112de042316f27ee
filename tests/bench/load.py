"""Load generators: client processes that call IngestService and time each call."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from cohortflow.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from cohortflow.types.v1 import types_pb2


def sample_event(n: int, run: str) -> ingest_pb2.Event:
    """A realistic small event (about 250 bytes stored)."""
    return ingest_pb2.Event(
        event_id=f"{run}-{n}",
        user_id=f"user-{n % 10_000}",
        name="Added to Cart" if n % 3 else "Viewed Product",
        properties={
            "sku": types_pb2.Value(string_value=f"SKU-{n % 977}"),
            "price": types_pb2.Value(number_value=(n % 5000) / 100),
            "quantity": types_pb2.Value(number_value=1 + n % 3),
        },
        context=ingest_pb2.Context(platform="ios", app_version="4.2.0", country="DE"),
    )


@dataclass(frozen=True)
class LoadSpec:
    address: str
    key: str
    mode: str  # "batch" or "unary" (gRPC), "segment" (HTTP /v1/batch)
    callers: int  # concurrent callers in one process
    calls: int  # calls per caller
    batch: int = 500
    connections: int = 4


def _worker(spec: LoadSpec, run: str, ready: mp.Barrier, out: mp.Queue) -> None:  # type: ignore[type-arg]
    async def main() -> None:
        metadata = [("authorization", f"Bearer {spec.key}")]
        per_call = spec.batch if spec.mode == "batch" else 1
        requests = []
        n = 0
        for _ in range(spec.callers * spec.calls):
            events = [sample_event(n + i, run) for i in range(per_call)]
            n += per_call
            if spec.mode == "batch":
                requests.append(ingest_pb2.TrackBatchRequest(events=events))
            else:
                requests.append(ingest_pb2.TrackRequest(event=events[0]))
        latencies: list[float] = []
        # Several connections per process, as many app servers would open, so
        # SO_REUSEPORT can spread them over the service's workers.
        channels = [
            grpc.aio.insecure_channel(spec.address, options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(spec.connections)
        ]
        stubs = [ingest_pb2_grpc.IngestServiceStub(ch) for ch in channels]
        methods = [s.TrackBatch if spec.mode == "batch" else s.Track for s in stubs]
        for i, method in enumerate(methods):
            warm = [sample_event(j, f"{run}-warm{i}") for j in range(per_call)]
            await method(  # connect and warm up, outside the timed window
                ingest_pb2.TrackBatchRequest(events=warm)
                if spec.mode == "batch"
                else ingest_pb2.TrackRequest(event=warm[0]),
                metadata=metadata,
            )
        ready.wait()
        start = time.perf_counter()

        async def caller(index: int) -> None:
            method = methods[index % len(methods)]
            for request in requests[index :: spec.callers]:
                t0 = time.perf_counter()
                await method(request, metadata=metadata)
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(caller(i) for i in range(spec.callers)))
        end = time.perf_counter()
        for ch in channels:
            await ch.close()
        out.put((start, end, latencies))

    asyncio.run(main())


@dataclass
class LoadResult:
    events: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.events / self.seconds


Worker = Callable[[LoadSpec, str, Any, Any], None]


def run_load(spec: LoadSpec, processes: int, worker: Worker | None = None) -> LoadResult:
    """Run `processes` client processes at once; wall time from first start to last end.

    `worker(spec, run, ready, out)` is one client process (default: gRPC calls)."""
    ctx = mp.get_context("spawn")
    ready = ctx.Barrier(processes)
    out: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    run = uuid.uuid4().hex[:10]
    workers = [
        ctx.Process(target=worker or _worker, args=(spec, f"{run}-{i}", ready, out))
        for i in range(processes)
    ]
    for w in workers:
        w.start()
    results = [out.get(timeout=600) for _ in workers]
    for w in workers:
        w.join()
    start = min(r[0] for r in results)
    end = max(r[1] for r in results)
    latencies = [lat for r in results for lat in r[2]]
    per_call = 1 if spec.mode == "unary" else spec.batch
    events = per_call * spec.callers * spec.calls * processes
    return LoadResult(events=events, seconds=end - start, latencies=latencies)
