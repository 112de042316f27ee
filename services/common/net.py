"""Sockets a service needs before it serves: a port nothing listens on."""

from __future__ import annotations

import socket


def free_port(preferred: int = 0, host: str = "127.0.0.1") -> int:
    """`preferred` if nothing listens there, else a port the kernel picks."""
    for candidate in (preferred, 0) if preferred else (0,):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # As servers do: connections of an earlier run in TIME_WAIT do not block the port.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, candidate))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    msg = "no free port"
    raise OSError(msg)
