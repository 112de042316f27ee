"""`make run`: the whole suite on one machine.

Starts embedded PostgreSQL and NATS (unless DATABASE_URL / NATS_URL name
servers to use), migrates, starts every service in `SERVICES` as a child process
with its output prefixed, prints where everything is and the development API key,
and stops it all in order on Ctrl-C or SIGTERM. Data stays under ./var.

Each child gets this process's whole environment, so every documented setting
applies, plus: DATABASE_URL and NATS_URL (the servers in use), COHORTFLOW_API_KEYS
(see `apps`), LOG_FORMAT (console unless set), and for every service its listen and
metrics variables (yours when set, see `ports`) and its client variable
(COHORTFLOW_INGEST, ...), so a child can reach the others.
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
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from services.common.database import with_database
from services.console.users import ConsoleUsers
from services.devstack.apps import DEV_APP_ID, DEV_KEY_FILE, DevApps, dev_apps
from services.devstack.embedded import EmbeddedNats, EmbeddedPostgres, wait_for_port
from services.devstack.ports import Listen, PortPlan, PortProblem
from services.devstack.projectors import extra_projectors, partitions_setting, projector_workers
from services.migrate import migrate

DEV_CONSOLE_USER = "dev"

__all__ = ["DEV_APP_ID", "SERVICES", "ServiceSpec", "Stack", "StackProblem"]


@dataclass(frozen=True)
class ServiceSpec:
    """One child of the dev stack: `python -m module`, listening where `listen_env` says."""

    name: str
    module: str
    listen_env: str
    default_port: int
    # the child's metrics port variable (its host is the matching *_METRICS_HOST), if any
    metrics_env: str | None = None
    default_metrics_port: int = 0
    # the variable by which the other children (and the CLI) find this one
    client_env: str | None = None
    # how its address is shown, e.g. "http://{address}/" for a web server
    shown_as: str = "{address}"
    extra_env: dict[str, str] = field(default_factory=dict)
    # a second, HTTP listener of the child (ingest's Segment-compatible API): its variable
    # ("0" there turns it off) and default port
    http_env: str | None = None
    default_http_port: int = 0
    # False for a second projector process: its ports are chosen, never taken from the
    # variables (which name the first one's)
    own_settings: bool = True


SERVICES = [
    ServiceSpec(
        "ingest", "services.ingest", "INGEST_LISTEN", 50051, "INGEST_METRICS_PORT", 9101,
        "COHORTFLOW_INGEST", http_env="INGEST_HTTP_LISTEN", default_http_port=8088,
    ),
    ServiceSpec(
        "projector", "services.projector", "PROJECTOR_LISTEN", 50052, "PROJECTOR_METRICS_PORT",
        9102, "COHORTFLOW_PROJECTOR",
    ),
    ServiceSpec(
        "campaign", "services.campaign", "CAMPAIGN_LISTEN", 50053, "CAMPAIGN_METRICS_PORT", 9103,
        "COHORTFLOW_CAMPAIGN",
    ),
    ServiceSpec(
        "console", "services.console", "CONSOLE_LISTEN", 8080, "CONSOLE_METRICS_PORT", 9104,
        shown_as="http://{address}/",
    ),
]  # fmt: skip


class StackProblem(RuntimeError):
    """A setting the stack cannot honour; the message names it."""


@dataclass(frozen=True)
class Child:
    spec: ServiceSpec
    listen: Listen
    metrics: Listen | None
    http: Listen | None = None

    def env(self) -> dict[str, str]:
        out = {self.spec.listen_env: self.listen.address, **self.spec.extra_env}
        if self.spec.http_env:
            out[self.spec.http_env] = self.http.address if self.http else "0"
        if self.spec.metrics_env:
            out[self.spec.metrics_env] = str(self.metrics.port if self.metrics else 0)
        return out


def dev_console_user(var: Path, database_url: str, apps: Iterable[str] = (DEV_APP_ID,)) -> str:
    """The console's development user "dev", created once, editor of every app the stack
    serves (also of apps added since); "user / password"."""
    path = var / "dev-console-password"
    password = path.read_text().strip() if path.exists() else secrets.token_urlsafe(12)
    users = ConsoleUsers.open(database_url, 1)
    try:
        if not users.exists(DEV_CONSOLE_USER):
            users.add(DEV_CONSOLE_USER, password, {DEV_APP_ID: "editor"})
        for app_id in apps:
            users.bind(DEV_CONSOLE_USER, app_id, "editor")
    finally:
        users.close()
    path.write_text(password + "\n")
    path.chmod(0o600)
    return f"{DEV_CONSOLE_USER} / {password}"


def _ports_file(var: Path) -> dict[str, int]:
    try:
        data = json.loads((var / "ports.json").read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, int) and 0 < v < 65536}


def _child(plan: PortPlan, spec: ServiceSpec, environ: dict[str, str]) -> Child:
    off = {v for v in (spec.metrics_env, spec.http_env) if v and environ.get(v, "").strip() == "0"}
    if not spec.own_settings:  # a second projector: ports of its own, metrics if the first has
        metrics = None if off else plan.metrics(spec.name, "", spec.default_metrics_port)
        return Child(spec, plan.listen(spec.name, "", spec.default_port), metrics)
    return Child(
        spec,
        plan.listen(spec.name, spec.listen_env, spec.default_port),
        plan.metrics(spec.name, spec.metrics_env, spec.default_metrics_port)
        if spec.metrics_env
        else None,
        plan.listen(f"{spec.name}_http", spec.http_env, spec.default_http_port)
        if spec.http_env and spec.http_env not in off
        else None,
    )


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
        self.shown_var = var
        self.var = var.resolve()
        self.log = log
        self.env = env or {}
        self.postgres: EmbeddedPostgres | None = None
        self.nats: EmbeddedNats | None = None
        self.children: dict[str, subprocess.Popen] = {}
        self.addresses: dict[str, str] = {}
        # where a shown address or setting came from, by the same names as `addresses`
        self.notes: dict[str, str] = {}
        self.apps: DevApps | None = None

    @staticmethod
    def _plan(environ: dict[str, str], remembered: dict[str, int]) -> tuple[PortPlan, list[Child]]:
        """Every child's ports, chosen (and your settings checked) before anything starts."""
        settings = [
            v
            for s in SERVICES
            for v in (s.listen_env, s.metrics_env, s.http_env)
            if v and environ.get(v, "").strip() != "0"
        ]
        try:
            partitions_setting(environ)  # checked before anything starts
            specs: list[ServiceSpec] = []
            for spec in SERVICES:
                specs.append(spec)
                if spec.name == "projector":
                    specs += extra_projectors(spec, projector_workers(environ))
            plan = PortPlan(environ, remembered, settings)
            children = [_child(plan, spec, environ) for spec in specs]
        except (PortProblem, ValueError) as problem:
            raise StackProblem(str(problem)) from None
        return plan, children

    def start(self) -> dict[str, str]:
        self.var.mkdir(parents=True, exist_ok=True)
        environ = {**os.environ, **self.env}
        remembered = _ports_file(self.var)
        plan, children = self._plan(environ, remembered)
        try:
            self.apps = dev_apps(self.var, environ)
        except ValueError as problem:
            raise StackProblem(str(problem)) from None
        database_url = environ.get("DATABASE_URL")
        if not database_url:
            self.postgres = EmbeddedPostgres(self.var / "postgres", plan.server("postgres"))
            database_url = with_database(self.postgres.start(), "cohortflow")
        nats_url = environ.get("NATS_URL")
        if not nats_url:
            self.nats = EmbeddedNats(self.var / "nats", plan.server("nats"))
            nats_url = self.nats.start()
        try:
            deployment = migrate(
                database_url,
                partitions=partitions_setting(environ),
                placement=environ.get("COHORTFLOW_PLACEMENT", ""),
            )
        except ValueError as problem:
            raise StackProblem(str(problem)) from None
        console_user = dev_console_user(self.var, database_url, self.apps.apps)
        env = {
            **environ,
            "DATABASE_URL": database_url,
            "NATS_URL": nats_url,
            "COHORTFLOW_API_KEYS": self.apps.keys_setting,
            "LOG_FORMAT": environ.get("LOG_FORMAT", "console"),
            "PYTHONUNBUFFERED": "1",
        }
        for child in children:
            if child.spec.client_env:
                env[child.spec.client_env] = child.listen.client_address
        # Campaign asks the projector whether the segments its campaigns name exist.
        env.setdefault("CAMPAIGN_SEGMENTS_ADDRESS", env["COHORTFLOW_PROJECTOR"])
        # The console serves pages over the projector's and campaign's gRPC APIs.
        env.setdefault("CONSOLE_PROJECTOR_ADDRESS", env["COHORTFLOW_PROJECTOR"])
        env.setdefault("CONSOLE_CAMPAIGN_ADDRESS", env["COHORTFLOW_CAMPAIGN"])
        ports = {
            "postgres": self.postgres.port if self.postgres else 0,
            "nats": self.nats.port if self.nats else 0,
        }
        for child in children:
            self._start_child(child, {**env, **child.env()})
            ports[child.spec.name] = child.listen.port
            if child.metrics is not None:
                ports[f"{child.spec.name}_metrics"] = child.metrics.port
            if child.http is not None:
                ports[f"{child.spec.name}_http"] = child.http.port
        (self.var / "ports.json").write_text(json.dumps(ports, indent=2))
        # For tools that work on the database and stream themselves (rebuild, determinism).
        (self.var / "database-url").write_text(database_url + "\n")
        (self.var / "nats-url").write_text(nats_url + "\n")
        self._show("database", database_url, "DATABASE_URL" if not self.postgres else "embedded")
        self._show("nats", nats_url, "NATS_URL" if not self.nats else "embedded")
        more = " + ".join(self.apps.sources) or "more: COHORTFLOW_API_KEYS=app:key,..."
        given = partitions_setting(environ)
        self._show(
            "partitions", str(deployment.partitions), "COHORTFLOW_PARTITIONS" if given else ""
        )
        self._show("apps", ", ".join(self.apps.apps), more)
        kept = self.shown_var / DEV_KEY_FILE
        self._show("api key", f"{self.apps.dev_key}  (app {DEV_APP_ID!r})", f"kept in {kept}")
        password_file = self.shown_var / "dev-console-password"
        self._show("console user", console_user, f"kept in {password_file}")
        return self.addresses

    def _show(self, name: str, value: str, note: str = "") -> None:
        self.addresses[name] = value
        if note:
            self.notes[name] = note

    def _start_child(self, child: Child, env: dict[str, str]) -> None:
        spec = child.spec
        process = subprocess.Popen(
            [sys.executable, "-m", spec.module],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.children[spec.name] = process
        threading.Thread(
            target=_pump, args=(spec.name, process.stdout, self.log or sys.stdout), daemon=True
        ).start()
        wait_for_port(child.listen.reachable_host, child.listen.port, 30, process)
        shown = spec.shown_as.format(address=child.listen.client_address)
        self._show(spec.name, shown, child.listen.source)
        if child.http is not None:
            wait_for_port(child.http.reachable_host, child.http.port, 30, process)
            url = f"http://{child.http.client_address}/v1/"
            self._show(f"{spec.name} http", url, f"Segment-compatible; {child.http.source}")
        elif spec.http_env:
            self._show(f"{spec.name} http", "off", f"{spec.http_env}=0")
        if child.metrics is not None:
            url = f"http://{child.metrics.client_address}/metrics"
            self._show(f"{spec.name} metrics", url, child.metrics.source)
        elif spec.metrics_env:
            self._show(f"{spec.name} metrics", "off", f"{spec.metrics_env}=0")

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
