"""deploy/probe.py, the compose health check: 0 only for a healthy service, else 1 and why."""

from __future__ import annotations

import random
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, HTTPServer

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.devstack.embedded import free_port
from tests.unit.deploy.manifests import DEPLOY

PROBE = DEPLOY / "probe.py"


def _probe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(PROBE), *args], capture_output=True, text=True, timeout=30, check=False
    )


@pytest.fixture
def health_server() -> Iterator[tuple[str, health.HealthServicer]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", servicer
    server.stop(0)


def test_serving_grpc_service_is_healthy(health_server) -> None:
    address, servicer = health_server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert _probe("grpc", address).returncode == 0


def test_not_serving_grpc_service_is_unhealthy(health_server) -> None:
    address, servicer = health_server
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    result = _probe("grpc", address)
    assert result.returncode == 1
    assert "NOT_SERVING" in result.stderr


def test_unknown_grpc_service_name_is_unhealthy(health_server) -> None:
    address, servicer = health_server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    result = _probe("grpc", address, "cohortflow.nothing.v1.Nothing")
    assert result.returncode == 1
    assert "NOT_FOUND" in result.stderr


def test_nothing_listening_is_unhealthy() -> None:
    result = _probe("grpc", f"127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert "UNAVAILABLE" in result.stderr


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 200 if self.path == "/healthz" else 503
        body = b'{"status": "ok"}' if status == 200 else b'{"status": "starting"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_2xx_is_healthy_and_5xx_is_not(http_server: str) -> None:
    assert _probe("http", f"{http_server}/healthz").returncode == 0
    result = _probe("http", f"{http_server}/other")
    assert result.returncode == 1
    assert "HTTP 503" in result.stderr


def test_bad_arguments_print_usage() -> None:
    result = _probe("tcp", "127.0.0.1:1")
    assert result.returncode == 2
    assert "usage" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("grpc", "not an address"),
        ("grpc", "127.0.0.1:99999"),
        ("grpc", "127.0.0.1:0"),
        ("grpc", "host\x01\x7f:50051"),
        ("grpc", "a" * 100_000),
        ("grpc", "".join(chr(c) for c in random.Random(7).sample(range(1, 0x2FF), 200))),
        ("http", "file:///etc/passwd"),
        ("http", "ftp://127.0.0.1/healthz"),
        ("http", "http://[::1"),
        ("http", "http://127.0.0.1:70000/healthz"),
        ("http", "http://" + "a" * 100_000),
    ],
    ids=lambda a: repr(a)[:40],
)
def test_hostile_arguments_are_refused_with_a_reason(args: tuple[str, ...]) -> None:
    result = _probe(*args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(("probe: ", "usage:"))


@pytest.fixture
def noise_server() -> Iterator[int]:
    """A TCP server that answers every connection with random bytes and hangs up."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        rng = random.Random(3)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(bytes(rng.randrange(256) for _ in range(4096)))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    listener.close()


def test_a_server_answering_random_bytes_is_unhealthy(noise_server: int) -> None:
    for args in (
        ("grpc", f"127.0.0.1:{noise_server}"),
        ("http", f"http://127.0.0.1:{noise_server}/"),
    ):
        result = _probe(*args)
        assert result.returncode == 1, result.stderr
        assert result.stderr.startswith("unhealthy: ")
        assert "Traceback" not in result.stderr
