"""`make run`: the whole suite on one machine.

Starts embedded PostgreSQL and NATS (unless DATABASE_URL / NATS_URL name
servers to use), migrates, starts every service as a child process with its
output prefixed, prints where everything is and the development API key, and
stops it all in order on Ctrl-C or SIGTERM. Data stays under ./var.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from services.common.database import with_database
from services.console.users import ConsoleUsers
from services.devstack.embedded import EmbeddedNats, EmbeddedPostgres, free_port, wait_for_port
from services.migrate import migrate

DEV_APP_ID = "demo"
DEV_CONSOLE_USER = "dev"


@dataclass
class ServiceSpec:
    name: str
    module: str
    port_env: str
    preferred_port: int
    metrics_env: str
    preferred_metrics_port: int
    extra_env: dict[str, str] = field(default_factory=dict)


SERVICES = [
    ServiceSpec("ingest", "services.ingest", "INGEST_LISTEN", 50051, "INGEST_METRICS_PORT", 9101),
    ServiceSpec(
        "projector", "services.projector", "PROJECTOR_LISTEN", 50052, "PROJECTOR_METRICS_PORT", 9102
    ),
    ServiceSpec(
        "campaign", "services.campaign", "CAMPAIGN_LISTEN", 50053, "CAMPAIGN_METRICS_PORT", 9103
    ),
    # The web console; "{name}" in extra_env is the address of a service started before it.
    ServiceSpec(
        "console",
        "services.console",
        "CONSOLE_LISTEN",
        8080,
        "CONSOLE_METRICS_PORT",
        9104,
        {"CONSOLE_PROJECTOR_ADDRESS": "{projector}", "CONSOLE_CAMPAIGN_ADDRESS": "{campaign}"},
    ),
]


def dev_api_key(var: Path) -> str:
    """The development key of app "demo", created once and kept in var/dev-api-key."""
    path = var / "dev-api-key"
    if path.exists():
        return path.read_text().strip()
    key = "cf_dev_" + secrets.token_urlsafe(24)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


def dev_console_user(var: Path, database_url: str) -> str:
    """The console's development user "dev" (editor of "demo"), created once; "user / password"."""
    path = var / "dev-console-password"
    password = path.read_text().strip() if path.exists() else secrets.token_urlsafe(12)
    users = ConsoleUsers.open(database_url, 1)
    try:
        if not users.exists(DEV_CONSOLE_USER):
            users.add(DEV_CONSOLE_USER, password, {DEV_APP_ID: "editor"})
    finally:
        users.close()
    path.write_text(password + "\n")
    path.chmod(0o600)
    return f"{DEV_CONSOLE_USER} / {password}"


def _ports_file(var: Path) -> dict[str, int]:
    try:
        return json.loads((var / "ports.json").read_text())
    except (OSError, ValueError):
        return {}


def _pump(name: str, stream, out) -> None:
    for line in iter(stream.readline, b""):
        out.write(f"[{name:<9}] {line.decode(errors='replace').rstrip()}\n")
        out.flush()


class Stack:
    """The suite under `var`; service output goes to `log` (default: this process's stdout),
    `env` adds to the services' environment (e.g. PROJECTOR_POLICIES)."""

    def __init__(
        self, var: Path, log: TextIO | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.var = var.resolve()
        self.log = log
        self.env = env or {}
        self.postgres: EmbeddedPostgres | None = None
        self.nats: EmbeddedNats | None = None
        self.children: dict[str, subprocess.Popen] = {}
        self.addresses: dict[str, str] = {}

    def start(self) -> dict[str, str]:
        self.var.mkdir(parents=True, exist_ok=True)
        remembered = _ports_file(self.var)
        database_url = os.environ.get("DATABASE_URL")
        if not database_url:
            self.postgres = EmbeddedPostgres(self.var / "postgres", remembered.get("postgres", 0))
            server_url = self.postgres.start()
            database_url = with_database(server_url, "cohortflow")
        nats_url = os.environ.get("NATS_URL")
        if not nats_url:
            self.nats = EmbeddedNats(self.var / "nats", remembered.get("nats", 0))
            nats_url = self.nats.start()
        migrate(database_url)
        key = dev_api_key(self.var)
        console_user = dev_console_user(self.var, database_url)
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "NATS_URL": nats_url,
            "COHORTFLOW_API_KEYS": f"{DEV_APP_ID}:{key}",
            "LOG_FORMAT": os.environ.get("LOG_FORMAT", "console"),
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }
        ports = {
            "postgres": self.postgres.port if self.postgres else 0,
            "nats": self.nats.port if self.nats else 0,
        }
        for spec in SERVICES:
            port = free_port(remembered.get(spec.name, spec.preferred_port))
            metrics = free_port(remembered.get(f"{spec.name}_metrics", spec.preferred_metrics_port))
            ports[spec.name], ports[f"{spec.name}_metrics"] = port, metrics
            child_env = {
                **env,
                spec.port_env: f"127.0.0.1:{port}",
                spec.metrics_env: str(metrics),
                **{k: v.format(**self.addresses) for k, v in spec.extra_env.items()},
            }
            process = subprocess.Popen(
                [sys.executable, "-m", spec.module],
                env=child_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self.children[spec.name] = process
            threading.Thread(
                target=_pump, args=(spec.name, process.stdout, self.log or sys.stdout), daemon=True
            ).start()
            wait_for_port("127.0.0.1", port, 30, process)
            self.addresses[spec.name] = f"127.0.0.1:{port}"
            self.addresses[f"{spec.name} metrics"] = f"http://127.0.0.1:{metrics}/metrics"
        (self.var / "ports.json").write_text(json.dumps(ports, indent=2))
        # For tools that work on the database and stream themselves (rebuild, determinism).
        (self.var / "database-url").write_text(database_url + "\n")
        (self.var / "nats-url").write_text(nats_url + "\n")
        self.addresses["database"] = database_url
        self.addresses["nats"] = nats_url
        self.addresses["api key"] = f"{key}  (app {DEV_APP_ID!r})"
        self.addresses["console"] = f"http://{self.addresses['console']}  (sign in: {console_user})"
        return self.addresses

    def watch(self, stop: threading.Event) -> str | None:
        """Block until `stop` is set or a service dies; the dead service's name, if any."""
        while not stop.wait(0.5):
            for name, process in self.children.items():
                if process.poll() is not None:
                    return name
        return None

    def stop(self, grace: float = 15.0) -> None:
        for process in self.children.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in self.children.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.nats is not None:
            self.nats.stop()
        if self.postgres is not None:
            self.postgres.stop()
