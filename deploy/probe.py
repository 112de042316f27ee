"""Container health check: exit 0 when the service says it is healthy, else 1 (compose).

    python deploy/probe.py grpc HOST:PORT [SERVICE]   grpc.health.v1 Check is SERVING
    python deploy/probe.py http URL                    GET answers 2xx

Kubernetes probes gRPC health natively (deploy/k8s); the image has no grpc_health_probe,
so compose runs this with the image's own Python. One line on stderr says why it failed.
"""

from __future__ import annotations

import http.client
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

TIMEOUT_S = 3.0
MAX_ARGUMENT = 2048
_ADDRESS = re.compile(r"(?P<host>[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>[0-9]{1,5})")


def _bad_address(address: str) -> str | None:
    match = _ADDRESS.fullmatch(address)
    if not match or not 1 <= int(match["port"]) <= 65535:
        return f"{address[:80]!r} is not host:port (port 1 to 65535)"
    return None


def _bad_url(url: str) -> str | None:
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as error:
        return f"{url[:80]!r}: {error}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url[:80]!r} is not an http(s) URL"
    if port is not None and not 1 <= port <= 65535:
        return f"{url[:80]!r}: port out of range"
    return None


def grpc_healthy(address: str, service: str = "") -> str | None:
    """None if `address` reports SERVING for `service`, else the reason."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT_S)
        except grpc.RpcError as error:
            return f"{address}: {error.code().name} {error.details() or ''}".strip()
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        return f"{address}: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}"
    return None


def http_healthy(url: str) -> str | None:
    """None if GET `url` answers 2xx, else the reason."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as reply:
            status = reply.status
    except urllib.error.HTTPError as error:
        return f"{url}: HTTP {error.code}"
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        return f"{url}: {type(error).__name__} {error}"
    return None if 200 <= status < 300 else f"{url}: HTTP {status}"


def main(argv: list[str]) -> int:
    grpc_call = argv[:1] == ["grpc"] and len(argv) in (2, 3)
    http_call = argv[:1] == ["http"] and len(argv) == 2
    if not (grpc_call or http_call) or any(len(a) > MAX_ARGUMENT for a in argv):
        print("usage:\n" + "\n".join(__doc__.splitlines()[2:4]), file=sys.stderr)
        return 2
    if grpc_call:
        problem = _bad_address(argv[1])
        failure = None if problem else grpc_healthy(argv[1], argv[2] if len(argv) == 3 else "")
    else:
        problem = _bad_url(argv[1])
        failure = None if problem else http_healthy(argv[1])
    if problem:
        print(f"probe: {problem}", file=sys.stderr)
        return 2
    if failure:
        print(f"unhealthy: {failure[:500]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
