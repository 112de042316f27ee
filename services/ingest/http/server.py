"""Serving the tracking API with uvicorn inside ingest's event loop.

The socket is bound here (SO_REUSEPORT when ingest runs as several workers, as the gRPC
port is), so every worker takes connections on the one port. Stopping follows the gRPC
server: /healthz answers 503 at once, requests keep being served for `drain` seconds
(load balancers stop routing here), then the socket closes and requests in flight get
`grace` seconds to finish (their events are committed before they are answered).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn

from services.ingest.http.api import TrackingApi

_BACKLOG = 1024


class _Server(uvicorn.Server):
    """uvicorn without signal handlers of its own: ingest's __main__ owns SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class HttpEdge:
    api: TrackingApi
    server: uvicorn.Server
    task: asyncio.Task[None]
    port: int

    async def stop(self, grace: float, drain: float = 0.0) -> None:
        """Report draining, keep serving for `drain` s, then finish what is in flight."""
        self.api.serving = False
        if drain > 0:
            await asyncio.sleep(drain)
        self.server.should_exit = True
        await self.task


def _bind(host: str, port: int, reuse_port: bool) -> socket.socket:
    plain = host.strip("[]")
    family = socket.AF_INET6 if ":" in plain else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((plain, port))
        sock.listen(_BACKLOG)
        sock.setblocking(False)
    except OSError as error:
        sock.close()
        msg = f"cannot listen on {host}:{port} (INGEST_HTTP_LISTEN): {error.strerror or error}"
        raise OSError(msg) from None
    return sock


async def start_http(
    api: TrackingApi, host: str, port: int, *, reuse_port: bool, grace: float
) -> HttpEdge:
    """Serve `api` on host:port (0: a free port) until `HttpEdge.stop`."""
    sock = _bind(host, port, reuse_port)
    config = uvicorn.Config(
        api.app,
        log_config=None,  # structlog is configured by the service
        log_level="warning",
        access_log=False,
        lifespan="off",
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=max(1, round(grace)),
    )
    server = _Server(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()  # raises what stopped it
            msg = f"the HTTP API on {host}:{port} stopped while starting"
            raise OSError(msg)
        await asyncio.sleep(0.01)
    return HttpEdge(api=api, server=server, task=task, port=sock.getsockname()[1])
