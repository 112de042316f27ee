"""gRPC servers in one shape: servicers + health + reflection + auth and observability.

Interceptors, outermost first: observability (every call logged and counted), API key
(a call without a valid key is refused before its request is read), request guard
(malformed bytes and bad text or times refused; a handler's bug answered INTERNAL with
an error id only). A request larger than `max_receive_bytes` is refused by gRPC with
RESOURCE_EXHAUSTED before it is parsed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common.grpc.auth import ApiKeyInterceptor, ApiKeys
from services.common.grpc.guard import RequestGuardInterceptor
from services.common.grpc.observability import ObservabilityInterceptor

# Requests: gRPC's own default, configurable per service (INGEST_MAX_RECEIVE_BYTES, ...).
DEFAULT_MAX_RECEIVE_BYTES = 4 * 1024 * 1024
# Answers are built by us, bounded by page sizes; this only guards against a runaway one.
MAX_SEND_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Registration:
    """How to add one servicer: `add(servicer, server)` and its full service name.

    `checked=False` leaves every request field to the servicer (see `guard`).
    """

    add: Callable[[Any, grpc.aio.Server], None]
    servicer: Any
    service_name: str
    checked: bool = True


@dataclass
class Served:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    service_names: Sequence[str]
    # Health names set so far (the overall "", RPC services, parts such as a relay).
    health_names: set[str] = field(default_factory=set)
    stopping: bool = False

    async def set_serving(self, serving: bool, names: Iterable[str] | None = None) -> None:
        """Set `names` (default: "" and every RPC service) SERVING or NOT_SERVING.

        Once stopping, nothing is set SERVING again.
        """
        if serving and self.stopping:
            return
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *self.service_names) if names is None else names:
            self.health_names.add(name)
            await self.health.set(name, status)

    async def stop(self, grace: float, drain: float = 0.0) -> None:
        """Report NOT_SERVING, keep serving for `drain` seconds, then refuse new calls
        and let in-flight ones finish for up to `grace` seconds.

        gRPC cancels calls that reached the server but were not yet dispatched
        when `server.stop` begins; the drain period lets those (and any sent
        before a load balancer saw NOT_SERVING) run normally.
        """
        self.stopping = True
        await self.set_serving(False, {"", *self.service_names, *self.health_names})
        if drain > 0:
            await asyncio.sleep(drain)
        await self.server.stop(grace)


async def create_server(
    address: str,
    registrations: Sequence[Registration],
    keys: ApiKeys,
    *,
    reuse_port: bool = False,
    max_receive_bytes: int = DEFAULT_MAX_RECEIVE_BYTES,
) -> Served:
    """Build and start a server listening on `address` ("host:port", port 0 = any free).

    `reuse_port` lets several worker processes share one port (SO_REUSEPORT).
    """
    unchecked = [r.service_name for r in registrations if not r.checked]
    server = grpc.aio.server(
        interceptors=[
            ObservabilityInterceptor(),
            ApiKeyInterceptor(keys),
            RequestGuardInterceptor(unchecked),
        ],
        options=[
            ("grpc.max_receive_message_length", max_receive_bytes),
            ("grpc.max_send_message_length", MAX_SEND_BYTES),
            ("grpc.so_reuseport", 1 if reuse_port else 0),
        ],
    )
    for registration in registrations:
        registration.add(registration.servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [r.service_name for r in registrations]
    reflection.enable_server_reflection(
        [
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    port = server.add_insecure_port(address)
    if port == 0:
        msg = f"cannot listen on {address}"
        raise OSError(msg)
    await server.start()
    served = Served(server=server, port=port, health=health_servicer, service_names=names)
    await served.set_serving(True)
    return served
