"""Reading deploy/: the Kubernetes manifests and the compose file, as the platforms would.

A workload's container environment is resolved like the kubelet does it: the ConfigMaps
named by `envFrom` (from any manifest here), then `env`. Secrets stay references.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
NATS_CONF = DEPLOY / "nats" / "nats-server.conf"
WORKLOADS = ("Deployment", "StatefulSet", "Job")
_SERVICE_COMMAND = re.compile(r"^services\.(\w+)$")

# What a service still does after SHUTDOWN_DRAIN_S + SHUTDOWN_GRACE_S, at most (seconds):
# the projector joins its fold thread (30 s) and runs a last relay round (10 s), see
# services/projector/bootstrap.py ProjectorApp.stop; campaign lets its loops finish their
# batch (provider calls bounded by CAMPAIGN_HTTP_TIMEOUT_S, 5 s); the others close pools.
STOP_TAIL_S = {"ingest": 5, "projector": 40, "campaign": 10, "console": 5, "migrate": 0}


@cache
def k8s_documents() -> tuple[tuple[str, dict[str, Any]], ...]:
    """(file name, document) of every manifest, kustomization.yaml aside."""
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [(path.name, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return tuple(docs)


def k8s_kind(kind: str) -> list[dict[str, Any]]:
    return [d for _, d in k8s_documents() if d["kind"] == kind]


def service_of(command: list[str]) -> str | None:
    """The service of `python -m services.<name>` (its name), None for other commands."""
    if len(command) == 3 and command[:2] == ["python", "-m"]:
        match = _SERVICE_COMMAND.match(command[2])
        return match.group(1) if match else None
    return None


@dataclass(frozen=True)
class Container:
    workload: dict[str, Any]
    spec: dict[str, Any]
    service: str | None

    @property
    def name(self) -> str:
        return f"{self.workload['kind']}/{self.workload['metadata']['name']}"

    @property
    def pod(self) -> dict[str, Any]:
        return self.workload["spec"]["template"]["spec"]

    def env(self) -> dict[str, str | None]:
        """Variable -> value (None for a secret or field reference; a ConfigMap key's value)."""
        maps = {m["metadata"]["name"]: m.get("data", {}) for m in k8s_kind("ConfigMap")}
        out: dict[str, str | None] = {}
        for source in self.spec.get("envFrom", []):
            ref = source["configMapRef"]["name"]  # KeyError: envFrom of a Secret (hides names)
            out.update(maps[ref])
        for item in self.spec.get("env", []):
            ref = item.get("valueFrom", {}).get("configMapKeyRef")
            out[item["name"]] = maps[ref["name"]][ref["key"]] if ref else item.get("value")
        return out


def k8s_containers() -> list[Container]:
    out = []
    for _, doc in k8s_documents():
        if doc["kind"] in WORKLOADS:
            for spec in doc["spec"]["template"]["spec"]["containers"]:
                out.append(Container(doc, spec, service_of(spec.get("command", []))))
    return out


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def compose_services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def seconds(duration: str | int) -> float:
    """Compose durations: "60s", "1m30s", "500ms"."""
    if isinstance(duration, int):
        return float(duration)
    total, units = 0.0, {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a duration: {duration!r}")
    for number, unit in parts:
        total += float(number) * units[unit]
    return total
