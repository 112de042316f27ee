"""Where each child of `make run` listens: your setting, else the port of last time, else its
default, else a free one.

`INGEST_LISTEN=127.0.0.1:6000` (or `PROJECTOR_LISTEN`, `CAMPAIGN_LISTEN`, ...) is used as given
and refused up front when something else listens there; `INGEST_METRICS_PORT` likewise (`0`
disables metrics). Unset, a service gets the port recorded in `var/ports.json` by the previous
run, or its documented default, whichever is free, else a port the kernel picks. Every choice
carries where it came from, so `make run` can say so.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from services.common.net import free_port

LOCALHOST = "127.0.0.1"
# Addresses that mean "every interface": a client reaches them on loopback.
_ANY = {"": LOCALHOST, "0.0.0.0": LOCALHOST, "::": "::1", "[::]": "::1"}


class PortProblem(ValueError):
    """A setting that cannot be honoured (malformed, or its port is taken)."""


@dataclass(frozen=True)
class Listen:
    """A host and port to serve on, and why (a variable's name, `var/ports.json`, ...)."""

    host: str
    port: int
    source: str

    @property
    def address(self) -> str:
        """host:port as servers and gRPC clients take it ([::1]:50051 for IPv6)."""
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{self.port}"

    @property
    def reachable_host(self) -> str:
        """Where a client on this machine connects to reach it."""
        return _ANY.get(self.host, self.host.strip("[]"))

    @property
    def client_address(self) -> str:
        """host:port a client on this machine dials (loopback for "every interface")."""
        return Listen(self.reachable_host, self.port, self.source).address


def parse_listen(variable: str, text: str) -> tuple[str, int]:
    """`host:port` (or `[v6]:port`, or `:port` for every interface) of a *_LISTEN variable."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise PortProblem(f"{variable}={text!r}: expected host:port, e.g. 127.0.0.1:50051")
    return host or "0.0.0.0", int(port)


def parse_port(variable: str, text: str) -> int:
    if not text.strip().isdigit() or int(text) > 65535:
        raise PortProblem(f"{variable}={text!r}: expected a port number (0 disables)")
    return int(text)


def is_free(host: str, port: int) -> bool:
    """Whether a server could bind host:port now (connections in TIME_WAIT do not count)."""
    plain = host.strip("[]")
    family = socket.AF_INET6 if ":" in plain else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((plain, port))
        except OSError:
            return False
    return True


class PortPlan:
    """Chooses every port of one start, never the same port twice. The ports of `settings`
    (the *_LISTEN and *_METRICS_PORT variables) that are set are read first, so no default,
    remembered or free port chosen for another child can take one of them."""

    def __init__(
        self,
        environ: Mapping[str, str],
        remembered: Mapping[str, int],
        settings: Iterable[str] = (),
    ) -> None:
        self.environ = environ
        self.remembered = remembered
        self.taken: set[int] = set()
        self.reserved = {port for variable in settings if (port := self._asked(variable))}

    def _asked(self, variable: str) -> int:
        """The port `variable` asks for (0: none, or any)."""
        text = self.environ.get(variable, "").strip()
        if not text:
            return 0
        if variable.endswith("_LISTEN"):
            return parse_listen(variable, text)[1]
        return parse_port(variable, text)

    def _fresh(self, host: str, preferred: int) -> int:
        port = free_port(preferred, _ANY.get(host, host.strip("[]")))
        while port in self.taken or port in self.reserved:
            port = free_port(0, LOCALHOST)
        return port

    def server(self, key: str) -> int:
        """A port for the embedded server `key` (postgres, nats): as last time when free."""
        return self._chosen(key, 0).port

    def _given(self, variable: str, text: str, host: str, port: int) -> Listen:
        source = f"{variable}={text}"
        if port == 0:
            return self._take(Listen(host, self._fresh(host, 0), f"{source}: a free port"))
        if port in self.taken or not is_free(host, port):
            raise PortProblem(f"{source}: port {port} is in use; set another port or free it")
        return self._take(Listen(host, port, source))

    def _take(self, listen: Listen) -> Listen:
        self.taken.add(listen.port)
        return listen

    def _chosen(self, key: str, default: int, host: str = LOCALHOST) -> Listen:
        before = self.remembered.get(key)
        preferred, source = (before, "as last time") if before else (default, "default")
        port = self._fresh(host, preferred)
        if port != preferred:
            source = f"{preferred} was in use" if preferred else "a free port"
        return self._take(Listen(host, port, source))

    def listen(self, key: str, variable: str, default: int) -> Listen:
        """The gRPC (or HTTP) address of the child `key`, from `variable` when it is set."""
        text = self.environ.get(variable, "").strip()
        if text:
            return self._given(variable, text, *parse_listen(variable, text))
        return self._chosen(key, default)

    def metrics(self, key: str, variable: str, default: int) -> Listen | None:
        """The metrics port of `key` (None: disabled by `variable=0`); its host is the one
        the child reads from the matching *_METRICS_HOST variable."""
        host_variable = variable.removesuffix("_PORT") + "_HOST"
        host = self.environ.get(host_variable, "").strip() or LOCALHOST
        text = self.environ.get(variable, "").strip()
        if text:
            port = parse_port(variable, text)
            if port == 0:
                return None
            return self._given(variable, text, host, port)
        return self._chosen(f"{key}_metrics", default, host)
